"""Full-integer TFLite (int8 input and output, int8 kernels only) for NPUs, from an ONNX model.

onnx2tf turns the ONNX graph into a TensorFlow SavedModel (NCHW -> NHWC), then TensorFlow's
own converter quantizes it on the calibration tensors with int8 input and output, so the
model runs on integer-only accelerators (i.MX 8M Plus NPU, Coral, Rockchip through their
LiteRT delegates). Both are heavy and optional: ``pip install 'edgetally[tflite]'``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.models.zoo import ResolvedModel
from edgetally.quantize.engines import first_line, quiet
from edgetally.quantize.errors import QuantizeError

Tensor = npt.NDArray[np.generic]
EXTRA_HINT = "pip install 'edgetally[tflite]'"
# onnx2tf checks its conversion on 20 sample images it otherwise downloads; it reads this
# file from the working folder instead, so it gets the calibration images and no network.
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _toolchain() -> tuple[Any, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import onnx2tf
        import tensorflow as tf
    except ImportError as exc:
        raise QuantizeError(
            f"--format tflite needs TensorFlow and onnx2tf ({exc.name} is missing): {EXTRA_HINT}"
        ) from exc
    return onnx2tf, tf


def to_nhwc(tensor: Tensor) -> npt.NDArray[np.float32]:
    """A calibration tensor in the TFLite model's layout (onnx2tf makes images NHWC)."""
    array = np.asarray(tensor, dtype=np.float32)
    if array.ndim == 4 and array.shape[1] == 3 and array.shape[3] != 3:
        array = array.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(array)


def _sample_images(tensors: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """20 small NHWC images in 0..1, the shape onnx2tf's self-check expects."""
    images = []
    for tensor in itertools.islice(itertools.cycle(tensors), 20):
        image = cv2.resize(tensor[0], (128, 128), interpolation=cv2.INTER_AREA)
        images.append(np.clip(image / 255.0, 0.0, 1.0))
    return np.stack(images).astype(np.float32)


def quantize_tflite(source: ResolvedModel, tensors: list[Tensor], target: Path, work: Path) -> Path:
    """FP32 ONNX -> full-integer TFLite with int8 input and output, calibrated on ``tensors``
    (already through the device's pre-processing); ``work`` is a scratch folder."""
    onnx2tf, tf = _toolchain()
    if source.manifest.format != "onnx":
        raise QuantizeError(
            f"--format tflite needs an ONNX source model, got {source.path.name} "
            f"({source.manifest.format}): use --format openvino for this model"
        )
    calibration = [to_nhwc(t) for t in tensors]
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / SAMPLE_FILE, _sample_images(calibration))
    saved_model = work / "saved_model"
    name = source.path.name
    # onnx2tf simplifies its input file in place: hand it a copy, never the user's model.
    onnx_copy = work / source.path.name
    shutil.copyfile(source.path, onnx_copy)
    try:
        with contextlib.chdir(work), quiet():
            onnx2tf.convert(
                input_onnx_file_path=str(onnx_copy),
                output_folder_path=str(saved_model),
                non_verbose=True,
            )
    except SystemExit as exc:  # onnx2tf exits on graphs it cannot convert
        raise QuantizeError(f"onnx2tf cannot convert {name} (exit {exc.code})") from exc
    except Exception as exc:
        raise QuantizeError(f"onnx2tf cannot convert {name}: {first_line(exc)}") from exc
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([t] for t in calibration)
        # Integer kernels only: a float fallback would keep the model off the NPU.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        with quiet():
            flatbuffer = converter.convert()
    except Exception as exc:
        raise QuantizeError(
            f"TensorFlow cannot quantize {source.path.name} to full-integer TFLite: "
            f"{first_line(exc)}"
        ) from exc
    target.write_bytes(flatbuffer)
    return target
