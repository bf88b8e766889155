"""INT8 against FP32, per model and backend: speed, size, agreement, count accuracy.

For each model x output format it quantizes the FP32 model with ``edgetally quantize``'s
pipeline (calibration on ../shared/data/calibration/coco20, written with --force so a refused
model is still measured), then runs the FP32 reference and the INT8 model interleaved on the
same frames in this one process and prints:

- ms per frame of the model itself (median; pre- and post-processing excluded), and the INT8
  time as a ratio of the FP32 reference measured beside it,
- model size on disk,
- agreement: the share of FP32 person boxes the INT8 model also finds (IoU >= 0.5), both cut
  at the same score threshold (0.25), over every frame of the footfall sequences; beside it,
  as a diagnostic only, the same with the INT8 boxes cut 0.05 lower (``@-0.05``): boxes the
  INT8 model scores just under the threshold rather than loses,
- count accuracy on each footfall sequence, scored as ``edgetally eval`` scores it.

The FP32 reference runs on the INT8 model's backend when that backend reads the source
model, otherwise (TFLite) on the device's automatic choice.

Usage: python benchmarks/quantize.py [--calib DIR] [--max-images N] [--formats ...]
       [--models ...] [--quantize-head] [--quantize-depthwise] [--preset mixed|performance]
       [--onnx-quantizer nncf|onnxruntime]
TFLite rows need the optional extra: pip install 'edgetally[tflite]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CALIB = SHARED / "data" / "calibration" / "coco20"
FOOTFALL = SHARED / "data" / "footfall"
# (sequence folder, counting lines) as in the data README's table of true counts.
SEQUENCES = [
    ("tud_campus", ["320,250,320,480"]),
    ("tud_stadtmitte", ["450,200,450,480", "320,200,320,480"]),
]
# (label, --model, --family): yolox-nano by file, so the family is explicit.
MODELS = [
    ("yolox-nano", str(SHARED / "models" / "yolox_nano.onnx"), "yolox"),
    ("lwpd", str(SHARED / "models" / "light_weight_person_detector.onnx"), "yolox"),
    ("pedestrian-ssdlite", "pedestrian-ssdlite", None),
]


@dataclass
class Row:
    model: str
    backend: str
    precision: str
    ms: float
    ratio: float
    size: int
    agreement: float | None
    agreement_lower: float | None
    accuracy: list[float]


def measure(
    label: str,
    model: str,
    family: str | None,
    fmt: str,
    calib: Path,
    max_images: int,
    keep_fp32: tuple[bool, bool],
    preset: str,
    onnx_quantizer: str = "nncf",
) -> tuple[Row, Row, float]:
    from edgetally.models.zoo import resolve_model
    from edgetally.quantize.data import load_frames
    from edgetally.quantize.gate import compare, count_accuracy, warm_up
    from edgetally.quantize.pipeline import TARGET, model_size, quantize_model, reference_backend
    from edgetally.runtime.backends import open_backend
    from edgetally.runtime.counting.detectors import Detector, load_detector

    with tempfile.TemporaryDirectory(prefix="edgetally-bench-") as tmp:
        t0 = time.perf_counter()
        result = quantize_model(
            model,
            calib,
            fmt,
            Path(tmp),
            force=True,
            family=family,
            calib_limit=max_images,
            keep_head_fp32=keep_fp32[0],
            keep_depthwise_fp32=keep_fp32[1],
            preset=preset,
            onnx_quantizer=onnx_quantizer,
        )
        took = time.perf_counter() - t0
        assert result.out is not None
        source = resolve_model(model, family=family)
        ref_backend = reference_backend(fmt, source)
        fp32 = Detector(source, open_backend(source.path, source.manifest.format, ref_backend))
        int8 = load_detector(str(result.out), TARGET[fmt][0])
        frames = [f for seq, _ in SEQUENCES for f in load_frames(FOOTFALL / seq)]
        for detector in (fp32, int8):
            warm_up(detector, frames[0], runs=5)
        comparison = compare(fp32, int8, frames)
        acc32 = [count_accuracy(fp32, FOOTFALL / s, lines) for s, lines in SEQUENCES]
        acc8 = [count_accuracy(int8, FOOTFALL / s, lines) for s, lines in SEQUENCES]
        ratio = comparison.int8_ms / comparison.fp32_ms
        ref = Row(
            label,
            fp32.info.backend,
            "FP32",
            comparison.fp32_ms,
            1.0,
            model_size(source.path),
            1.0,
            1.0,
            acc32,
        )
        quant = Row(
            label,
            f"{int8.info.backend} ({fmt})",
            "INT8",
            comparison.int8_ms,
            ratio,
            result.size_int8,
            comparison.agreement,
            comparison.agreement_lower,
            acc8,
        )
        return ref, quant, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=Path, default=CALIB)
    parser.add_argument("--max-images", type=int, default=300)
    parser.add_argument("--formats", nargs="+", default=["openvino", "onnx", "tflite"])
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS])
    parser.add_argument(
        "--quantize-head",
        action="store_true",
        help="openvino: quantize the detection head too (default: FP32)",
    )
    parser.add_argument(
        "--quantize-depthwise",
        action="store_true",
        help="openvino: quantize grouped convolutions too (default: FP32)",
    )
    parser.add_argument("--preset", default="mixed", choices=["mixed", "performance"])
    parser.add_argument(
        "--onnx-quantizer",
        default="nncf",
        choices=["nncf", "onnxruntime"],
        help="onnx: NNCF's QDQ (default) or onnxruntime's static quantizer",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not FOOTFALL.is_dir() or not args.calib.is_dir():
        raise SystemExit(f"needs the footfall sequences and calibration images under {SHARED}")
    formats = list(args.formats)
    if "tflite" in formats and importlib.util.find_spec("onnx2tf") is None:
        print("tflite: skipped (pip install 'edgetally[tflite]')")
        formats.remove("tflite")
    from edgetally.quantize.errors import QuantizeError

    seqs = " / ".join(s for s, _ in SEQUENCES)
    header = (
        f"{'model':<19} {'backend':<22} {'prec':<4} {'ms/frame':>8} {'x FP32':>6} "
        f"{'size MB':>7} {'agree':>6} {'@-0.05':>6}  count accuracy {seqs}"
    )
    print(header)
    print("-" * len(header))
    for label, model, family in MODELS:
        if label not in args.models:
            continue
        for fmt in formats:
            try:
                rows = measure(
                    label,
                    model,
                    family,
                    fmt,
                    args.calib,
                    args.max_images,
                    (not args.quantize_head, not args.quantize_depthwise),
                    args.preset,
                    args.onnx_quantizer,
                )
            except QuantizeError as exc:
                print(f"{label:<19} {fmt:<22} skipped: {exc}")
                continue
            *pair, took = rows
            for row in pair:
                agree, lower = (
                    "-" if a is None else f"{a:.3f}" for a in (row.agreement, row.agreement_lower)
                )
                accs = " / ".join(f"{a:.2f}" for a in row.accuracy)
                print(
                    f"{row.model:<19} {row.backend:<22} {row.precision:<4} {row.ms:>8.2f} "
                    f"{row.ratio:>6.2f} {row.size / 1e6:>7.2f} {agree:>6} {lower:>6}  {accs}"
                )
            print(f"{'':<19} (quantized and judged in {took:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
