"""Drawing for setting a camera up: boxes, track ids, lines and running counts.

Only used when asked (``--annotate``, ``edgetally snapshot``): by default no frame is ever
written anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.counting.analytics import LineCounter, ZoneSpec
from edgetally.runtime.errors import SourceError
from edgetally.runtime.types import FrameResult

Image = npt.NDArray[Any]
_GREEN = (60, 200, 60)
_RED = (40, 40, 230)
_YELLOW = (0, 215, 255)


def _colour(track_id: int) -> tuple[int, int, int]:
    return ((37 * track_id) % 200 + 55, (17 * track_id) % 200 + 55, (97 * track_id) % 200 + 55)


def draw_lines(image: Image, counters: Sequence[LineCounter]) -> None:
    for counter in counters:
        s = counter.spec
        p1, p2 = (round(s.x1), round(s.y1)), (round(s.x2), round(s.y2))
        cv2.line(image, p1, p2, _YELLOW, 2)
        # An arrow from the line's middle toward the "in" side.
        mx, my = (s.x1 + s.x2) / 2, (s.y1 + s.y2) / 2
        nx, ny = s.y2 - s.y1, s.x1 - s.x2
        norm = max((nx * nx + ny * ny) ** 0.5, 1e-6)
        tip = (round(mx + 30 * nx / norm), round(my + 30 * ny / norm))
        cv2.arrowedLine(image, (round(mx), round(my)), tip, _YELLOW, 2, tipLength=0.3)
        label = f"in {counter.counts['in']}  out {counter.counts['out']}"
        cv2.putText(
            image,
            label,
            (p1[0] + 5, max(p1[1] - 8, 14)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            _YELLOW,
            2,
            cv2.LINE_AA,
        )


def draw_zones(image: Image, zones: Sequence[ZoneSpec], occupancy: Mapping[str, int]) -> None:
    for zone in zones:
        pts = np.asarray(zone.polygon, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], True, _GREEN, 2)
        x, y = pts[0, 0]
        cv2.putText(
            image,
            f"{zone.zone_id}: {occupancy.get(zone.zone_id, 0)}",
            (int(x), int(y) - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            _GREEN,
            1,
            cv2.LINE_AA,
        )


def draw_result(
    image: Image,
    result: FrameResult,
    counters: Sequence[LineCounter],
    zones: Sequence[ZoneSpec] = (),
) -> Image:
    out = image.copy()
    for tr in result.tracks:
        x1, y1, x2, y2 = (round(v) for v in tr.xyxy)
        colour = _colour(int(tr.track_id))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.circle(out, (round((x1 + x2) / 2), y2), 3, _RED, -1)
        cv2.putText(
            out,
            str(tr.track_id),
            (x1, max(y1 - 4, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            2,
            cv2.LINE_AA,
        )
    draw_zones(out, zones, {str(k): v for k, v in result.occupancy.items()})
    draw_lines(out, counters)
    return out


def draw_grid(image: Image, step: int = 50) -> Image:
    """A pixel grid with coordinates, to read line and zone points off a frame."""
    out = image.copy()
    h, w = out.shape[:2]
    for x in range(0, w, step):
        cv2.line(out, (x, 0), (x, h), (200, 200, 200), 1)
        if x % (2 * step) == 0:
            cv2.putText(
                out, str(x), (x + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1
            )
    for y in range(0, h, step):
        cv2.line(out, (0, y), (w, y), (200, 200, 200), 1)
        if y % (2 * step) == 0:
            cv2.putText(out, str(y), (2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    return out


class VideoWriter:
    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter.fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
        self._writer = cv2.VideoWriter(str(path), fourcc, fps, size)
        if not self._writer.isOpened():
            raise SourceError(f"cannot write video {path}")

    def write(self, image: Image) -> None:
        self._writer.write(image)

    def close(self) -> None:
        self._writer.release()
