"""``edgetally quantize``: FP32 -> INT8, judged by the accuracy gate, written only if it passes.

The FP32 model is loaded as the device loads it (:class:`Detector`), calibration images go
through that detector's own pre-processing, the INT8 model is written to a scratch folder with
a sidecar manifest carrying the FP32 model's processing family, loaded back through the zoo like
``edgetally count --model`` would, and compared with the FP32 model frame by frame. Only a
model that passes the gate (or ``force``) is moved into the output folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.models.zoo import ResolvedModel, resolve_model, sha256_of, write_sidecar
from edgetally.quantize.data import load_calibration, load_frames
from edgetally.quantize.engines import PRESETS, quantize_onnx, quantize_openvino
from edgetally.quantize.errors import QuantizeError
from edgetally.quantize.gate import (
    MAX_COUNT_DROP,
    MIN_AGREEMENT,
    Comparison,
    compare,
    count_accuracy,
    judge,
    warm_up,
)
from edgetally.runtime.backends import open_backend
from edgetally.runtime.counting.detectors import Detector
from edgetally.runtime.types import Progress

log = logging.getLogger(__name__)
Engine = Callable[[ResolvedModel, list[npt.NDArray[np.generic]], Path], object]

FORMATS = ("openvino", "onnx", "tflite")
# The backend each output format runs on, and the suffix of its file.
TARGET: dict[str, tuple[str, str]] = {
    "openvino": ("openvino", ".xml"),
    "onnx": ("onnxruntime", ".onnx"),
    "tflite": ("litert", ".tflite"),
}


@dataclass(frozen=True, slots=True)
class QuantizeResult:
    format: str
    out: Path | None  # None when the gate refused the model (and nothing was written)
    size_fp32: int
    size_int8: int
    comparison: Comparison
    count_accuracy_fp32: float | None
    count_accuracy_int8: float | None
    passed: bool
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        agreement = self.comparison.agreement
        return {
            "format": self.format,
            "out": str(self.out) if self.out else None,
            "size_fp32": self.size_fp32,
            "size_int8": self.size_int8,
            "fp32_ms": round(self.comparison.fp32_ms, 3),
            "int8_ms": round(self.comparison.int8_ms, 3),
            "agreement": round(agreement, 4) if agreement is not None else None,
            "count_accuracy_fp32": self.count_accuracy_fp32,
            "count_accuracy_int8": self.count_accuracy_int8,
        }


def model_files(path: Path) -> list[Path]:
    """A model's files: an OpenVINO IR is its .xml and its .bin."""
    files = [path]
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        files.append(path.with_suffix(".bin"))
    return files


def model_size(path: Path) -> int:
    return sum(p.stat().st_size for p in model_files(path))


def reference_backend(fmt: str, source: ResolvedModel) -> str:
    """Where the FP32 model runs for the comparison: the INT8 model's backend when that one
    reads the source format, otherwise the device's automatic choice."""
    backend = TARGET[fmt][0]
    readable = {"openvino": ("onnx", "openvino", "tflite", "tf-frozen"), "onnxruntime": ("onnx",)}
    return backend if source.manifest.format in readable.get(backend, ()) else "auto"


def quantize_model(
    model: str,
    calib: Path,
    fmt: str,
    out_dir: Path,
    *,
    eval_seq: Path | None = None,
    lines: list[str] | None = None,
    force: bool = False,
    family: str | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_count_drop: float = MAX_COUNT_DROP,
    calib_limit: int = 300,
    calib_stride: int = 1,
    keep_head_fp32: bool = True,
    keep_depthwise_fp32: bool = True,
    preset: str = "mixed",
    onnx_quantizer: str = "nncf",
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize ``model`` to ``fmt`` and judge it; ``engine`` replaces the format's quantizer
    (a callable writing the INT8 file from the source and the calibration tensors).
    ``keep_head_fp32``, ``keep_depthwise_fp32`` and ``preset`` tune NNCF for ``openvino``
    (see :func:`quantize_openvino`); ``onnx_quantizer`` picks ``onnx``'s quantizer (see
    :func:`quantize_onnx`). ``progress`` is told how far the calibration (``"calibration"``,
    images prepared), the gate (``"gate"``, images compared) and the count accuracy runs
    (``"count accuracy FP32"``, ``"count accuracy INT8"``, frames) are; the quantizer's own
    step in between is not reported (NNCF shows its own progress)."""
    if fmt not in FORMATS:
        raise QuantizeError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if preset not in PRESETS:
        raise QuantizeError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if eval_seq is not None and not lines:
        raise QuantizeError("--eval needs at least one --line x1,y1,x2,y2 to count on")
    if lines and eval_seq is None:
        raise QuantizeError("--line is only used with --eval SEQ_DIR")
    if out_dir.exists() and not out_dir.is_dir():
        raise QuantizeError(f"--out {out_dir}: exists and is not a folder")
    source = resolve_model(model, family=family)
    precision = source.manifest.precision
    if source.manifest.format == "tflite" and source.manifest.input.dtype in ("uint8", "int8"):
        precision = source.manifest.input.dtype  # an integer-input TFLite model is quantized
    if precision != "fp32":
        raise QuantizeError(f"{source.name} is already {precision}: quantize its FP32 original")
    images = load_calibration(calib, calib_limit, calib_stride)
    gate_images = load_frames(eval_seq) if eval_seq is not None else images

    fp32 = Detector(
        source, open_backend(source.path, source.manifest.format, reference_backend(fmt, source))
    )
    # Calibration data goes through the device's own pre-processing.
    tensors = []
    for done, image in enumerate(images, start=1):
        tensors.append(fp32.prepare(image).tensor)
        if progress is not None:
            progress("calibration", done, len(images))

    backend, suffix = TARGET[fmt]
    stem = f"{source.path.stem.removesuffix('_float32')}-int8"
    scratch = Path(tempfile.mkdtemp(prefix="edgetally-quantize-"))
    try:
        target = scratch / f"{stem}{suffix}"
        layout = source.manifest.input.layout
        in_dtype = source.manifest.input.dtype
        if engine is not None:
            engine(source, tensors, target)
        elif fmt == "openvino":
            quantize_openvino(
                source.path,
                tensors,
                target,
                keep_head_fp32=keep_head_fp32,
                keep_depthwise_fp32=keep_depthwise_fp32,
                preset=preset,
            )
        elif fmt == "onnx":
            quantize_onnx(source.path, tensors, target, quantizer=onnx_quantizer)
        else:
            from edgetally.quantize.tflite import quantize_tflite

            quantize_tflite(source, tensors, target, scratch / "work")
            layout, in_dtype = "NHWC", "int8"
        manifest = source.manifest.model_copy(
            update={
                "name": stem,
                "format": fmt,
                "file": target.name,
                "package": None,
                "sha256": sha256_of(target),
                "precision": "int8",
                "input": source.manifest.input.model_copy(
                    update={"layout": layout, "dtype": in_dtype}
                ),
                "source": f"edgetally quantize {source.name} --format {fmt} "
                f"(calibrated on {len(tensors)} images of {calib.name})",
            }
        )
        write_sidecar(target, manifest)
        # Loaded back the way `edgetally count --model FILE` loads it: through its sidecar.
        quantized = resolve_model(str(target))
        int8 = Detector(quantized, open_backend(target, fmt, backend))
        for detector in (fp32, int8):
            warm_up(detector, gate_images[0])
        comparison = compare(fp32, int8, gate_images, progress=progress)
        acc32 = acc8 = None
        if eval_seq is not None:
            acc32 = count_accuracy(fp32, eval_seq, lines or [], progress, "count accuracy FP32")
            acc8 = count_accuracy(int8, eval_seq, lines or [], progress, "count accuracy INT8")
        verdict = judge(comparison.agreement, acc32, acc8, min_agreement, max_count_drop)
        size8 = model_size(target)
        out: Path | None = None
        if verdict.passed or force:
            if not verdict.passed:
                why = "; ".join(verdict.reasons)
                log.warning("accuracy gate failed (%s); written anyway (--force)", why)
            out_dir.mkdir(parents=True, exist_ok=True)
            for path in [*model_files(target), target.with_name(target.name + ".model.json")]:
                shutil.move(str(path), out_dir / path.name)
            out = out_dir / target.name
        return QuantizeResult(
            format=fmt,
            out=out,
            size_fp32=model_size(source.path),
            size_int8=size8,
            comparison=comparison,
            count_accuracy_fp32=acc32,
            count_accuracy_int8=acc8,
            passed=verdict.passed,
            reasons=verdict.reasons,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
