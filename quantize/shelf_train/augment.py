"""Augmentations of one photo and its boxes: zoom (crop in or shrink onto a grey canvas),
horizontal flip and colour (hue, saturation, brightness). Then the device's letterbox."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]  # pixel xyxy
PAD = 114  # YOLOX's letterbox grey


@dataclass(frozen=True, slots=True)
class Augment:
    flip: float = 0.5  # probability of a horizontal flip
    zoom_in: float = 0.5  # probability of a crop of ``crop`` .. 1 of each side
    crop: float = 0.5
    zoom_out: float = 0.2  # probability of shrinking to ``shrink`` .. 1 on a grey canvas
    shrink: float = 0.6
    colour: float = 0.8  # probability of a hue/saturation/brightness change
    min_kept: float = 0.4  # a cut box is kept when this share of its area is left


def _clip(boxes: Boxes, w: int, h: int, kept: float) -> Boxes:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    left = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    ok = (
        (left >= kept * np.maximum(area, 1e-6))
        & (out[:, 2] - out[:, 0] >= 2)
        & (out[:, 3] - out[:, 1] >= 2)
    )
    return out[ok]


def augment(
    image: Image, boxes: Boxes, rng: np.random.Generator, aug: Augment
) -> tuple[Image, Boxes]:
    """A randomly changed copy of ``image`` and its pixel boxes."""
    h, w = image.shape[:2]
    if rng.random() < aug.zoom_in:
        cw = int(w * rng.uniform(aug.crop, 1.0))
        ch = int(h * rng.uniform(aug.crop, 1.0))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        image = image[y0 : y0 + ch, x0 : x0 + cw]
        boxes = _clip(boxes - np.array([x0, y0, x0, y0], np.float32), cw, ch, aug.min_kept)
        h, w = ch, cw
    elif rng.random() < aug.zoom_out:
        s = rng.uniform(aug.shrink, 1.0)
        nw, nh = max(8, int(w * s)), max(8, int(h * s))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = np.full((h, w, 3), PAD, np.uint8)
        x0 = int(rng.integers(0, w - nw + 1))
        y0 = int(rng.integers(0, h - nh + 1))
        canvas[y0 : y0 + nh, x0 : x0 + nw] = small
        image = canvas
        boxes = boxes * np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
        boxes = boxes + np.array([x0, y0, x0, y0], np.float32)
    if rng.random() < aug.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        boxes = boxes.copy()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if rng.random() < aug.colour:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
        hsv[..., 1] *= rng.uniform(0.6, 1.4)
        hsv[..., 2] *= rng.uniform(0.6, 1.4)
        image = np.asarray(
            cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR), np.uint8
        )
    return np.ascontiguousarray(image, np.uint8), boxes.astype(np.float32)


def letterbox(image: Image, size: int) -> tuple[Image, float]:
    """As the device prepares a YOLOX input: scaled to fit, top-left, padded grey; and the
    scale (input pixels per image pixel)."""
    h, w = image.shape[:2]
    ratio = min(size / w, size / h)
    nw, nh = round(w * ratio), round(h * ratio)
    canvas = np.full((size, size, 3), PAD, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio
