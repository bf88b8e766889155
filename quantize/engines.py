"""The quantizers: NNCF post-training INT8 for OpenVINO IR and for ONNX (QDQ).

Each takes the FP32 model file and the calibration tensors, already prepared by the device's
own pre-processing (:meth:`Detector.prepare`), and writes the INT8 model file.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.quantize.errors import QuantizeError

log = logging.getLogger(__name__)
Tensor = npt.NDArray[np.generic]


def _nncf() -> ModuleType:
    try:
        return importlib.import_module("nncf")
    except ImportError as exc:
        raise QuantizeError("NNCF is not installed: pip install 'edgetally[quantize]'") from exc


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF and the converters print on stdout; ``--json`` owns stdout, so they go to stderr.
    NNCF's logger holds stdout itself: its handlers are pointed at stderr meanwhile, and its
    info lines (one per op left in FP32) are dropped."""
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    streams = [h for h in nncf_log.handlers if isinstance(h, logging.StreamHandler)]
    before = [h.setStream(sys.stderr) for h in streams]
    nncf_log.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        nncf_log.setLevel(level)
        for handler, stream in zip(streams, before, strict=True):
            if stream is not None:
                handler.setStream(stream)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fold_constants(model: object) -> None:
    try:
        from openvino._offline_transformations import apply_moc_transformations
    except ImportError:  # a private module: without it the model is only less clean
        log.info("OpenVINO offline transformations unavailable; quantizing the model as read")
        return
    apply_moc_transformations(model, cf=True)


# The ops where a head's predictions are made: the graph walk from the outputs stops at them.
PREDICTION_OPS = frozenset({"Convolution", "GroupConvolution", "MatMul"})
PRESETS = ("mixed", "performance")
DEPTHWISE_OPS = ("GroupConvolution",)


def head_scope(model: Any) -> list[str]:
    """Names of the ops that make and assemble a detector's outputs: every op on the way back
    from the outputs up to and including the last convolutions (YOLOX: the box, objectness and
    class prediction convolutions, their sigmoids and the concats/reshapes of the output;
    SSD: the box and class predictors and the box decoding)."""
    names: list[str] = []
    seen: set[str] = set()
    todo = [result for result in model.get_results()]
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        kind = node.get_type_name()
        if name in seen or kind == "Parameter":
            continue
        seen.add(name)
        if kind not in ("Constant", "Result"):
            names.append(name)
        if kind not in PREDICTION_OPS:
            todo.extend(port.get_source_output().get_node() for port in node.inputs())
    return names


def quantize_openvino(
    source: Path,
    tensors: list[Tensor],
    out_xml: Path,
    *,
    keep_head_fp32: bool = True,
    keep_depthwise_fp32: bool = True,
    preset: str = "mixed",
) -> Path:
    """FP32 model (ONNX, IR, TF frozen graph; whatever OpenVINO reads) -> INT8 OpenVINO IR.

    ``keep_head_fp32`` leaves the detection head's prediction convolutions and the output
    sub-graph in FP32 (a few small convolutions: no measurable cost, fewer boxes lost just
    under the score threshold); ``keep_depthwise_fp32`` leaves the grouped (depthwise)
    convolutions in FP32: their per-channel ranges are the ones 8 bits serve worst, and they
    are a small share of the time; ``preset`` is NNCF's: ``mixed`` (asymmetric activations)
    or ``performance`` (symmetric)."""
    import openvino as ov

    if preset not in PRESETS:
        raise QuantizeError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    nncf = _nncf()
    try:
        model = ov.Core().read_model(str(source))
        # Fix the input shape to the calibration tensors' and fold the shape sub-graphs the
        # ONNX export leaves around every bias: NNCF then sees Conv+bias+Swish patterns
        # (agreement on YOLOX-Nano 0.78 -> 0.97) and the IR is smaller.
        model.reshape({model.inputs[0]: list(tensors[0].shape)})
        _fold_constants(model)
    except Exception as exc:
        raise QuantizeError(f"OpenVINO cannot read {source.name}: {first_line(exc)}") from exc
    ignored = nncf.IgnoredScope(
        names=head_scope(model) if keep_head_fp32 else [],
        types=list(DEPTHWISE_OPS) if keep_depthwise_fp32 else [],
        validate=False,
    )
    try:
        with quiet():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(tensors),
                preset=nncf.QuantizationPreset(preset),
                subset_size=len(tensors),
                # Full bias correction: slower to quantize, keeps more boxes on few images.
                fast_bias_correction=False,
                ignored_scope=ignored,
            )
        ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    except QuantizeError:
        raise
    except Exception as exc:
        raise QuantizeError(f"NNCF failed on {source.name}: {first_line(exc)}") from exc
    return out_xml


def _prepare_onnx(source: Path, scratch: Path) -> Any:
    """Fold constants and shape sub-graphs (onnxruntime's basic, portable optimizations) and
    lift the opset to 13, where QDQ is per-channel."""
    import onnx
    import onnxruntime as ort
    from onnx import version_converter

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(scratch)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(scratch))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:
        model = version_converter.convert_version(model, 13)
    return model


ONNX_QUANTIZERS = ("nncf", "onnxruntime")


def _calibration_reader(name: str, tensors: list[Tensor]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type information
        def __init__(self) -> None:
            self._items = iter([{name: t} for t in tensors])

        def get_next(self) -> dict[str, Tensor] | None:
            return next(self._items, None)

    return Reader()


def _quantize_onnx_ort(prepared: Path, name: str, tensors: list[Tensor], out_onnx: Path) -> None:
    """onnxruntime's own QDQ quantizer: a Q/DQ pair on every tensor between quantizable ops
    (the Conv outputs too), U8 activations, per-channel S8 weights: the form onnxruntime's
    graph optimizer fuses into QLinearConv, QLinearSigmoid, QLinearMul, QLinearConcat and
    QLinearAdd, so the whole network runs on integer kernels. On YOLOX-style detectors it is
    no faster than FP32 (each SiLU becomes a QLinearSigmoid and a QLinearMul, slower than the
    fused FP32 one) and its MinMax ranges lose boxes (agreement 0.79 on YOLOX-Nano)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared),
        str(out_onnx),
        _calibration_reader(name, tensors),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def _quantize_onnx_nncf(model: Any, name: str, tensors: list[Tensor], out_onnx: Path) -> None:
    """NNCF's QDQ: Q/DQ only on the inputs of Conv/Add/Concat (OpenVINO's scheme), S8
    activations. onnxruntime fuses none of it (no Q after a Conv that feeds a SiLU), so it
    dequantizes every weight and activation on each run and is slower than FP32."""
    import onnx

    nncf = _nncf()
    quantized = nncf.quantize(
        model,
        nncf.Dataset(tensors, lambda t: {name: t}),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(tensors),
        # NNCF's full bias correction fails on ONNX graphs like YOLOX's (duplicate
        # definition sites in its extracted sub-graphs): the fast one works.
        fast_bias_correction=True,
    )
    onnx.save(quantized, str(out_onnx))


def quantize_onnx(
    source: Path, tensors: list[Tensor], out_onnx: Path, *, quantizer: str = "nncf"
) -> Path:
    """FP32 ONNX -> INT8 ONNX with QuantizeLinear/DequantizeLinear pairs (runs in onnxruntime).

    ``quantizer`` is ``nncf`` (the default: keeps the boxes, but onnxruntime runs it slower
    than FP32) or ``onnxruntime`` (its own static QDQ quantizer: a model onnxruntime runs on
    integer kernels, no faster and less accurate on these detectors)."""
    if source.suffix.lower() != ".onnx":
        raise QuantizeError(
            f"--format onnx needs an ONNX source model, got {source.name}: "
            "use --format openvino for this model"
        )
    if quantizer not in ONNX_QUANTIZERS:
        raise QuantizeError(
            f"ONNX quantizer {quantizer!r}: expected one of {', '.join(ONNX_QUANTIZERS)}"
        )
    if quantizer == "nncf":
        _nncf()
    try:
        import onnx
    except ImportError as exc:
        raise QuantizeError("onnx is not installed: pip install 'edgetally[quantize]'") from exc

    prepared = out_onnx.with_suffix(".fp32-opt.onnx")
    try:
        try:
            model = _prepare_onnx(source, prepared)
            onnx.save(model, str(prepared))
        except Exception as exc:
            raise QuantizeError(f"cannot read ONNX model {source.name}: {first_line(exc)}") from exc
        name = model.graph.input[0].name
        try:
            with quiet():
                if quantizer == "nncf":
                    _quantize_onnx_nncf(model, name, tensors, out_onnx)
                else:
                    _quantize_onnx_ort(prepared, name, tensors, out_onnx)
        except Exception as exc:
            raise QuantizeError(f"{quantizer} failed on {source.name}: {first_line(exc)}") from exc
    finally:
        prepared.unlink(missing_ok=True)
    return out_onnx
