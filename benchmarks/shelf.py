"""Milliseconds per frame of the shelf logic (classical scorer + monitor) on the rendered
scene: 8 facings, 400x260 frames, people boxes from the script. Rendering is not timed.

    .venv/bin/python benchmarks/shelf.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from edgetally.runtime.shelf.monitor import ShelfMonitor
from edgetally.runtime.shelf.scorers import ClassicalScorer
from edgetally.runtime.shelf.synthetic import PRODUCTS, ShelfScene, default_script, scene_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    scene, cfg = ShelfScene(), scene_config()
    script = default_script()
    frames = [scene.render(np.array(s.stock), s.people) for s in script]
    boxes = [np.array([p.box for p in s.people], np.float32).reshape(-1, 4) for s in script]
    t0 = datetime.now(UTC)
    best = float("inf")
    for _ in range(args.repeat):
        mon = ShelfMonitor(cfg, ClassicalScorer(scene.render(np.full(8, PRODUCTS)), cfg.facings))
        start = time.perf_counter()
        for i, (img, b) in enumerate(zip(frames, boxes, strict=True)):
            mon.update(img, b, i, t0 + timedelta(seconds=i / 5))
        best = min(best, (time.perf_counter() - start) / len(frames))
    h, w = frames[0].shape[:2]
    print(
        f"shelf logic: {best * 1000:.3f} ms/frame ({len(cfg.facings)} facings, {w}x{h}, "
        f"best of {args.repeat} x {len(frames)} frames)"
    )


if __name__ == "__main__":
    main()
