"""Images for calibration and for the accuracy gate, read as the device reads them (BGR)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.quantize.errors import QuantizeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
Image = npt.NDArray[np.uint8]


def load_images(folder: Path, limit: int = 300) -> list[Image]:
    """Up to ``limit`` BGR images of ``folder`` (sorted by name); at least one is required."""
    if not folder.is_dir():
        raise QuantizeError(f"--calib {folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    images = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise QuantizeError(f"--calib: cannot decode image {path}")
        images.append(np.asarray(image, dtype=np.uint8))
    if not images:
        raise QuantizeError(
            f"--calib {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder"
        )
    return images


def load_frames(seq_dir: Path, stride: int = 1, limit: int | None = None) -> list[Image]:
    """The frames of a sequence (a MOT folder, a video or an image folder), every ``stride``-th."""
    from edgetally.runtime.sources import SourceOptions, open_source

    source = open_source(seq_dir, SourceOptions(stride=stride, max_frames=limit))
    try:
        frames = [frame.image for frame in source]
    finally:
        source.close()
    if not frames:
        raise QuantizeError(f"--eval {seq_dir}: no frames")
    return frames
