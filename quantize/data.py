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


def load_frames(
    seq_dir: Path, stride: int = 1, limit: int | None = None, option: str = "--eval"
) -> list[Image]:
    """The frames of a sequence (a MOT folder, a video or an image folder), every ``stride``-th."""
    from edgetally.runtime.counting.sources import SourceOptions, open_source
    from edgetally.runtime.errors import SourceError

    try:
        source = open_source(seq_dir, SourceOptions(stride=stride, max_frames=limit))
        try:
            frames = [frame.image for frame in source]
        finally:
            source.close()
    except SourceError as exc:
        raise QuantizeError(f"{option} {seq_dir}: {exc}") from exc
    if not frames:
        raise QuantizeError(f"{option} {seq_dir}: no frames")
    return frames


def is_sequence(path: Path) -> bool:
    """A video file or a MOT sequence folder (rather than a folder of still images)."""
    if path.is_file():
        return path.suffix.lower() not in IMAGE_SUFFIXES
    return (path / "seqinfo.ini").is_file() or (path / "img1").is_dir()


def load_calibration(path: Path, limit: int = 300, stride: int = 1) -> list[Image]:
    """Calibration images: a folder of stills, or every ``stride``-th frame of a video or MOT
    sequence (footage from the camera the model will run on is the most representative)."""
    if path.exists() and is_sequence(path):
        return load_frames(path, stride=stride, limit=limit, option="--calib")
    return load_images(path, limit)
