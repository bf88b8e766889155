"""Empty-gap proposals on a single shelf photo, with no reference and no trained model.

Empty facings show the shelf's back wall or floor: few edges and little print, and often a
shadow. The proposer finds shelf bands (rows of strong, long horizontal edges: the shelf
boards), and within each band the runs of columns whose edge density is low; each run wider
than a minimum becomes a box spanning the band, trimmed to its low-texture rows. Its score
is how empty it looks (1 - density relative to the image's median density, plus darkness
when ``use_darkness``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.types import Detections

Image = npt.NDArray[np.uint8]


class GapProposer(Protocol):
    """Boxes of empty gaps (class 0) with scores in [0, 1] on one image."""

    def propose(self, image: Image) -> Detections: ...


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask, [False]])
    d = np.diff(padded.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def shelf_bands(gray: Image, min_band: int = 24) -> list[tuple[int, int]]:
    """[y1, y2) of the bands between shelf boards, each at least ``min_band`` rows high."""
    h = gray.shape[0]
    gy = np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    # a shelf board is a long horizontal edge: strong |d/dy| over much of the row
    row = (gy > 60).mean(axis=1)
    row = np.convolve(row, np.ones(3) / 3, mode="same")
    peaks = [
        y
        for y in range(1, h - 1)
        if row[y] >= 0.25 and row[y] >= row[y - 1] and row[y] >= row[y + 1]
    ]
    lines: list[int] = []
    for y in peaks:
        if not lines or y - lines[-1] > min_band:
            lines.append(y)
    cuts = [0, *lines, h]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b - a >= min_band]


@dataclass(frozen=True, slots=True)
class TextureGapProposer:
    """Low edge density columns within shelf bands (see the module's description)."""

    canny_low: int = 50
    canny_high: int = 150
    density_ratio: float = 0.35  # a column is empty below this share of the median density
    min_band: int = 24  # px: bands thinner than this are skipped
    min_width: int = 12  # px
    use_darkness: bool = True

    def propose(self, image: Image) -> Detections:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        gray = np.asarray(cv2.GaussianBlur(gray, (3, 3), 0), np.uint8)
        edges = np.asarray(cv2.Canny(gray, self.canny_low, self.canny_high), np.uint8)
        e = edges.astype(np.float32) / 255.0
        median_density = max(1e-3, float(np.median(cv2.blur(e, (31, 31)))))
        median_level = float(np.median(gray)) + 1.0
        boxes: list[tuple[float, float, float, float]] = []
        scores: list[float] = []
        for y1, y2 in shelf_bands(gray, self.min_band):
            # skip a few rows at each end: the boards' own edges
            m = max(2, (y2 - y1) // 10)
            band = e[y1 + m : y2 - m]
            if band.shape[0] < 4:
                continue
            col = np.convolve(band.mean(axis=0), np.ones(9) / 9, mode="same")
            empty = col < self.density_ratio * median_density
            for x1, x2 in _runs(empty):
                if x2 - x1 < self.min_width:
                    continue
                patch = band[:, x1:x2]
                rows = patch.mean(axis=1) < self.density_ratio * median_density
                rr = _runs(rows)
                ry1, ry2 = max(rr, key=lambda r: r[1] - r[0]) if rr else (0, patch.shape[0])
                if ry2 - ry1 < self.min_band // 2:
                    continue
                by1, by2 = y1 + m + ry1, y1 + m + ry2
                score = 1.0 - float(patch[ry1:ry2].mean()) / median_density
                if self.use_darkness:
                    level = float(gray[by1:by2, x1:x2].mean()) / median_level
                    score = 0.5 * score + 0.5 * float(np.clip(1.0 - level, 0.0, 1.0))
                boxes.append((float(x1), float(by1), float(x2), float(by2)))
                scores.append(float(np.clip(score, 0.0, 1.0)))
        n = len(boxes)
        return Detections(
            np.array(boxes, np.float32).reshape(n, 4),
            np.array(scores, np.float32),
            np.zeros(n, np.int32),
        )


@dataclass(frozen=True, slots=True)
class DarkBlobGapProposer:
    """Connected blobs that are both low in edges and darker than the image: the dark back of
    an empty shelf. Needs no shelf bands, so it copes with tilted phone photos."""

    density_ratio: float = 0.5
    dark_ratio: float = 0.75  # blob pixels darker than this share of the median grey
    window: int = 31
    min_area: int = 600
    min_side: int = 8

    def propose(self, image: Image) -> Detections:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 50, 150).astype(np.float32) / 255
        density = cv2.blur(edges, (self.window, self.window))
        level = cv2.blur(gray.astype(np.float32), (self.window, self.window))
        med_d = max(1e-3, float(np.median(density)))
        med_l = float(np.median(level)) + 1.0
        mask = (density < self.density_ratio * med_d) & (level < self.dark_ratio * med_l)
        m8 = mask.astype(np.uint8)
        kernel = np.ones((5, 5), np.uint8)
        opened = cv2.morphologyEx(m8, cv2.MORPH_OPEN, kernel)
        m8 = np.asarray(cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel), np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(m8, connectivity=8)
        boxes: list[tuple[float, float, float, float]] = []
        scores: list[float] = []
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < self.min_area or w < self.min_side or h < self.min_side:
                continue
            if area < 0.4 * w * h:
                continue
            d = float(density[y : y + h, x : x + w].mean()) / med_d
            lv = float(level[y : y + h, x : x + w].mean()) / med_l
            boxes.append((float(x), float(y), float(x + w), float(y + h)))
            scores.append(float(np.clip(0.5 * (1 - d) + 0.5 * (1 - lv), 0.0, 1.0)))
        k = len(boxes)
        return Detections(
            np.array(boxes, np.float32).reshape(k, 4),
            np.array(scores, np.float32),
            np.zeros(k, np.int32),
        )


@dataclass(frozen=True, slots=True)
class DetectorGapProposer:
    """A trained detector's gaps: its boxes of ``gap_class``; or, with ``products``, the runs
    of columns of each shelf band that no product box covers (a product box covers the
    columns it spans when it fills at least ``band_share`` of the band's height)."""

    detect: Callable[[Image], Detections]
    gap_class: int = 0
    products: bool = False
    min_band: int = 24  # px
    min_width: int = 12  # px
    band_share: float = 0.3

    def propose(self, image: Image) -> Detections:
        dets = self.detect(image)
        if not self.products:
            keep = dets.class_id == self.gap_class
            n = int(keep.sum())
            return Detections(dets.xyxy[keep], dets.score[keep], np.zeros(n, np.int32))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        width = image.shape[1]
        boxes: list[tuple[float, float, float, float]] = []
        for y1, y2 in shelf_bands(np.asarray(gray, np.uint8), self.min_band):
            covered = np.zeros(width, bool)
            for bx1, by1, bx2, by2 in dets.xyxy:
                if min(by2, y2) - max(by1, y1) >= self.band_share * (y2 - y1):
                    covered[max(0, int(bx1)) : int(np.ceil(bx2))] = True
            boxes += [
                (float(x1), float(y1), float(x2), float(y2))
                for x1, x2 in _runs(~covered)
                if x2 - x1 >= self.min_width
            ]
        k = len(boxes)
        return Detections(
            np.array(boxes, np.float32).reshape(k, 4), np.ones(k, np.float32), np.zeros(k, np.int32)
        )
