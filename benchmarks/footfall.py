"""Footfall pipeline cost per model and backend.

For each model x backend it runs the counting pipeline over the same clip, in a child
process of its own (so peak memory is that configuration's), and prints:

- inference ms per inferred frame (pre-processing, the model, post-processing),
- tracking + analytics ms per frame, and its share of inference (aim: under 5%),
- the motion gate's own cost per frame (gate on),
- end-to-end frames per second (decoding included), with the motion gate off and on,
- the share of frames the motion gate skipped, and peak resident memory.

Usage: python benchmarks/footfall.py [--frames N] [--source VIDEO]
Models not shipped in the package come from ../shared/models (or EDGETALLY_MODEL_DIRS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
LINES = ["200,140,200,300", "560,180,560,430"]
CONFIGS = [
    ("yolox-nano", "onnxruntime"),  # the default
    ("yolox-nano", "openvino"),
    ("pedestrian-ssdlite", "openvino"),
    ("lwpd", "onnxruntime"),
    ("lwpd", "openvino"),
    ("ssd-mobilenet-v1-coco-quant", "litert"),
]


def one(model: str, backend: str, source: str, frames: int, gate: bool) -> dict[str, float]:
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline, run_count
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    detector = load_detector(model, backend)
    pipeline = build_pipeline(detector, LINES, gate=gate)
    # Warm up the backend outside the measurement.
    warm = next(iter(open_source(source, SourceOptions(max_frames=1))))
    for _ in range(3):
        detector.detect(warm.image)
    report = run_count(open_source(source, SourceOptions(max_frames=frames)), pipeline)
    stats = dict(report.stats)
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["crossings"] = sum(ln["in"] + ln["out"] for ln in report.lines)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--source", default=str(VTEST))
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "BACKEND", "GATE"))
    args = parser.parse_args()
    if args.one:
        model, backend, gate = args.one
        print(json.dumps(one(model, backend, args.source, args.frames, gate == "on")))
        return
    if not Path(args.source).exists():
        sys.exit(f"no clip at {args.source}: install Debian's opencv-doc or pass --source")
    env = dict(os.environ)
    if SHARED_MODELS.is_dir():
        env.setdefault("EDGETALLY_MODEL_DIRS", str(SHARED_MODELS))
    print(f"clip {Path(args.source).name}, first {args.frames} frames, lines {LINES}")
    header = (
        f"{'model':<28} {'backend':<12} {'infer ms':>8} {'track+an ms':>11} "
        f"{'share':>6} {'gate ms':>7} {'fps':>6} {'fps gate':>8} {'skipped':>7} "
        f"{'peak MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for model, backend in CONFIGS:
        rows = {}
        for gate in ("off", "on"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    model,
                    backend,
                    gate,
                    "--frames",
                    str(args.frames),
                    "--source",
                    args.source,
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                print(f"{model:<28} {backend:<12} skipped: {last}")
                break
            rows[gate] = json.loads(proc.stdout.strip().splitlines()[-1])
        if len(rows) < 2:
            continue
        off, on = rows["off"], rows["on"]
        infer = off["infer_ms_per_inferred_frame"]
        analytics = off["analytics_ms_per_frame"]
        print(
            f"{model:<28} {backend:<12} {infer:>8.1f} {analytics:>11.2f} "
            f"{analytics / infer:>6.1%} {on['gate_ms_per_frame']:>7.2f} "
            f"{off['fps']:>6.1f} {on['fps']:>8.1f} "
            f"{on['gate_skipped_share']:>7.0%} {off['peak_rss_mb']:>7.0f}"
        )


if __name__ == "__main__":
    main()
