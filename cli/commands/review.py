"""`edgetally review`: pictures to find a line's true crossings by eye, with no detector.

A reference made by correcting the device's own crossings cannot see the people the
detector missed. These pictures show every person who passes the line, seen or not:

- space-time strips: the pixels just either side of the line, one column per frame, frames
  side by side. Everyone who crosses leaves a trace in both strips; the strip that shows it
  first gives the direction.
- with ``--at FRAME``, a grid of crops around the line for the frames around FRAME (the line
  drawn, frame numbers on each tile) to settle who crossed, which way, and on which frame.

It also writes an empty reference for the line, to be filled in by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from edgetally.runtime.errors import ConfigError, SourceError

STRIP_FRAMES = 200  # frames per strip picture


def review(
    source: str = typer.Argument(..., metavar="SOURCE", help="Video file or image folder."),
    line: str = typer.Option(..., "--line", metavar="X1,Y1,X2,Y2", help="The counting line."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Folder to write into."),
    offset: float = typer.Option(
        15.0, "--offset", metavar="PX", help="How far either side of the line the strips look."
    ),
    extend: float = typer.Option(
        60.0,
        "--extend",
        metavar="PX",
        help="How far the strips reach past each end of the line (bodies above the feet).",
    ),
    at: list[int] = typer.Option(
        [],
        "--at",
        metavar="FRAME",
        help="Also a grid of crops around the line, every 2nd frame from FRAME-10 to "
        "FRAME+10 (repeatable).",
    ),
) -> None:
    """Space-time strips (and crops) of a line, to find its true crossings by eye."""
    import cv2
    import numpy as np
    from edgetally.runtime.counting.analytics import LineSpec
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    spec = LineSpec.parse(line)
    if offset <= 0 or extend < 0:
        raise ConfigError("--offset must be above 0 and --extend 0 or more (pixels)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, give a folder")
    out.mkdir(parents=True, exist_ok=True)
    length = math.hypot(spec.x2 - spec.x1, spec.y2 - spec.y1)
    ux, uy = (spec.x2 - spec.x1) / length, (spec.y2 - spec.y1) / length
    nx, ny = uy, -ux  # toward the `in` side
    steps = np.arange(-extend, length + extend + 1.0, 1.0)
    sides: list[tuple[str, Any, Any]] = []
    for name, sign in (("out side", -1.0), ("in side", 1.0)):
        xs = (spec.x1 + ux * steps + sign * offset * nx).astype(np.float32).reshape(-1, 1)
        ys = (spec.y1 + uy * steps + sign * offset * ny).astype(np.float32).reshape(-1, 1)
        sides.append((name, xs, ys))
    wanted = {f for a in at for f in range(a - 10, a + 11, 2) if f >= 0}
    columns: list[list[Any]] = [[], []]
    crops: dict[int, Any] = {}
    src = open_source(source, SourceOptions())
    fps = src.fps or 0.0
    size = (0, 0)
    try:
        for frame in src:
            size = frame.size
            if frame.index == 0:
                spec.check_inside(*size)
            for k, (_, xs, ys) in enumerate(sides):
                columns[k].append(cv2.remap(frame.image, xs, ys, cv2.INTER_LINEAR))
            if frame.index in wanted:
                crops[frame.index] = _crop(frame.image, spec, frame.index)
    finally:
        src.close()
    if not columns[0]:
        raise SourceError(f"{source}: no frame could be read")
    written = []
    n = len(columns[0])
    for start in range(0, n, STRIP_FRAMES):
        path = out / f"strips-{start:05d}.png"
        picture = _strips(
            [
                (name, columns[k][start : start + STRIP_FRAMES])
                for k, (name, _, _) in enumerate(sides)
            ],
            start,
            int(extend),
            int(length),
        )
        cv2.imwrite(str(path), picture)
        written.append(path)
    for a in at:
        tiles = [crops[f] for f in sorted(crops) if a - 10 <= f <= a + 10]
        if tiles:
            path = out / f"frames-{a:05d}.png"
            blank = [np.zeros_like(tiles[0])] * 3
            rows = [np.hstack((tiles[i : i + 4] + blank)[:4]) for i in range(0, len(tiles), 4)]
            cv2.imwrite(str(path), np.vstack(rows))
            written.append(path)
    reference = out / "reference.json"
    if not reference.exists():
        points = [int(v) if float(v).is_integer() else v for v in spec.points]
        reference.write_text(json.dumps({"line": points, "events": []}, indent=1) + "\n")
        written.append(reference)
    typer.echo(
        f"{source}: {n} frames ({fps:g} fps), line {line}; wrote {len(written)} files to {out}"
    )
    typer.echo(
        "  strips: one column per frame, the out side above, the in side below; a person "
        "crossing in shows in the upper strip first. Add each crossing to reference.json as "
        '{"t": FRAME / fps, "dir": "in" | "out"}.'
    )


def _strips(parts: list[tuple[str, list[Any]]], start: int, extend: int, length: int) -> Any:
    """Two strips, one above the other: time left to right (3 px a frame), the line's
    ends marked in red, frame numbers every 10 frames."""
    import cv2
    import numpy as np

    scale = 3
    drawn = []
    for name, cols in parts:
        strip = np.concatenate(cols, axis=1)  # (points along the line, frames, 3)
        strip = cv2.resize(
            strip, (strip.shape[1] * scale, strip.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        for row in (extend, extend + length):
            if 0 <= row < strip.shape[0]:
                strip[row, :] = (0, 0, 255)
        head = np.zeros((18, strip.shape[1], 3), np.uint8)
        cv2.putText(head, name, (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        for i in range(len(cols)):
            f = start + i
            if f % 10 == 0:
                strip[:, i * scale] = (0, 200, 200) if f % 50 == 0 else (0, 110, 110)
                if f % 20 == 0:
                    cv2.putText(
                        head,
                        str(f),
                        (i * scale + 2, 13),
                        cv2.FONT_HERSHEY_SIMPLEX,
                        0.4,
                        (0, 255, 255),
                        1,
                    )
        drawn.append(np.vstack([head, strip]))
    gap = np.full((6, drawn[0].shape[1], 3), 255, np.uint8)
    return np.vstack([drawn[0], gap, drawn[1]])


def _crop(image: Any, spec: Any, index: int) -> Any:
    """A 2x crop around the line with the line drawn thin and the frame number."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    x0 = max(int(min(spec.x1, spec.x2)) - 80, 0)
    x1 = min(int(max(spec.x1, spec.x2)) + 80, w)
    y0 = max(int(min(spec.y1, spec.y2)) - 120, 0)
    y1 = min(int(max(spec.y1, spec.y2)) + 40, h)
    tile = image[y0:y1, x0:x1].copy()
    cv2.line(
        tile,
        (int(spec.x1 - x0), int(spec.y1 - y0)),
        (int(spec.x2 - x0), int(spec.y2 - y0)),
        (0, 220, 255),
        1,
    )
    scale = min(2.0, 480 / tile.shape[1])
    tile = cv2.resize(
        tile,
        (round(tile.shape[1] * scale), round(tile.shape[0] * scale)),
        interpolation=cv2.INTER_CUBIC,
    )
    cv2.putText(tile, str(index), (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
    return np.ascontiguousarray(tile)


def register(app: typer.Typer) -> None:
    app.command("review")(review)
