"""YOLO-format gap labels, checked line by line: one error naming the file, line and fault.

A label file holds one ``class cx cy w h`` line per gap, normalised to the image (0..1), as
labelling tools export; a polygon line (``class x1 y1 x2 y2 x3 y3 ...``, YOLO's segment
form) counts as its bounding box. An image without a label file shows no gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from edgetally.quantize.shelf_train.backbone import TrainError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
Boxes = npt.NDArray[np.float32]  # (n, 4) normalised x1, y1, x2, y2


@dataclass(frozen=True, slots=True)
class Sample:
    image: Path
    boxes: Boxes


def parse_label_file(path: Path, classes: int = 1) -> Boxes:
    """The normalised xyxy boxes of one label file (TrainError on the first bad line)."""
    boxes: list[tuple[float, float, float, float]] = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"cannot read label file {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{lineno}"
        try:
            cls = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise TrainError(
                f"{where}: expected 'class cx cy w h' (numbers), got {line.strip()!r}"
            ) from None
        if not 0 <= cls < classes:
            raise TrainError(f"{where}: class {cls} out of range (one class: 0, an empty gap)")
        if not all(np.isfinite(values)) or any(v < 0.0 or v > 1.0 for v in values):
            raise TrainError(f"{where}: coordinates outside 0..1 (labels are normalised)")
        if len(values) == 4:
            cx, cy, w, h = values
            if w <= 0.0 or h <= 0.0:
                raise TrainError(f"{where}: a box needs a width and height above 0")
            x1, y1 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
            x2, y2 = min(1.0, cx + w / 2), min(1.0, cy + h / 2)
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        else:
            raise TrainError(
                f"{where}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
                f"got {len(parts)} values"
            )
        if x2 > x1 and y2 > y1:
            boxes.append((x1, y1, x2, y2))
    return np.array(boxes, np.float32).reshape(-1, 4)


def load_samples(images_dir: Path, labels_dir: Path) -> list[Sample]:
    """Every image of ``images_dir`` with the boxes of its label file, checked."""
    if not images_dir.is_dir():
        raise TrainError(f"images folder {images_dir} not found")
    if not labels_dir.is_dir():
        raise TrainError(f"labels folder {labels_dir} not found")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise TrainError(f"{images_dir}: no images (.jpg, .jpeg, .png, .bmp)")
    samples = []
    for image in images:
        label = labels_dir / f"{image.stem}.txt"
        boxes = parse_label_file(label) if label.exists() else np.zeros((0, 4), np.float32)
        samples.append(Sample(image, boxes))
    if not any(len(s.boxes) for s in samples):
        raise TrainError(f"{labels_dir}: no gap boxes in any label file")
    return samples
