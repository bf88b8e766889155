"""Score empty-facing detection on a folder of images with YOLO-format boxes of gaps.

Layout (as exported by common labelling tools): ``DIR/images/NAME.jpg`` and
``DIR/labels/NAME.txt`` with one ``class cx cy w h`` line per gap, normalised to the image.
A prediction matches an unmatched true box of IoU >= ``iou`` (greedily, best score first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.proposer import GapProposer, Image
from edgetally.runtime.types import Progress, iou_matrix

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True, slots=True)
class Score:
    method: str
    images: int
    truths: int
    predictions: int
    true_positives: int
    iou: float

    @property
    def precision(self) -> float:
        return self.true_positives / self.predictions if self.predictions else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.truths if self.truths else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "images": self.images,
            "truths": self.truths,
            "predictions": self.predictions,
            "true_positives": self.true_positives,
            "iou": self.iou,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def read_yolo_labels(path: Path, width: int, height: int, cls: int = 0) -> npt.NDArray[np.float32]:
    """Pixel xyxy boxes of class ``cls`` from a YOLO label file (missing file: no boxes)."""
    boxes = []
    if path.exists():
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                c, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
            except (ValueError, TypeError):
                raise ShelfError(f"{path}:{lineno}: expected 'class cx cy w h'") from None
            if c != cls:
                continue
            boxes.append(
                (
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                )
            )
    return np.array(boxes, np.float32).reshape(-1, 4)


def match(
    pred: npt.NDArray[np.float32],
    score: npt.NDArray[np.float32],
    truth: npt.NDArray[np.float32],
    iou: float,
) -> int:
    """True positives: greedy one-to-one matching, best-scored prediction first."""
    if len(pred) == 0 or len(truth) == 0:
        return 0
    ious = iou_matrix(pred[np.argsort(-score)], truth)
    used = np.zeros(len(truth), bool)
    tp = 0
    for row in ious:
        row = np.where(used, -1.0, row)
        j = int(np.argmax(row))
        if row[j] >= iou:
            used[j] = True
            tp += 1
    return tp


def image_paths(folder: Path) -> list[Path]:
    """The images of a YOLO-layout folder (``images/`` beside ``labels/``), sorted."""
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise ShelfError(f"{folder}: expected images/ and labels/ folders (YOLO layout)")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ShelfError(f"{images_dir}: no images")
    return paths


def dataset(
    folder: Path, paths: list[Path] | None = None
) -> Iterator[tuple[Path, Image, npt.NDArray[np.float32]]]:
    labels_dir = folder / "labels"
    for p in image_paths(folder) if paths is None else paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ShelfError(f"cannot read image {p}")
        h, w = img.shape[:2]
        yield p, np.asarray(img, np.uint8), read_yolo_labels(labels_dir / (p.stem + ".txt"), w, h)


def evaluate(
    folder: Path,
    methods: dict[str, GapProposer],
    iou: float = 0.3,
    min_score: float = 0.0,
    progress: Progress | None = None,
) -> list[Score]:
    """Precision, recall and F1 at ``iou`` for each method over the folder; ``progress``
    is told ``(folder name, images done, images in all)``."""
    totals = {name: [0, 0, 0] for name in methods}
    n_images = 0
    paths = image_paths(folder)
    for _, img, truth in dataset(folder, paths):
        n_images += 1
        for name, method in methods.items():
            dets = method.propose(img)
            keep = dets.score >= min_score
            t = totals[name]
            t[0] += len(truth)
            t[1] += int(keep.sum())
            t[2] += match(dets.xyxy[keep], dets.score[keep], truth, iou)
        if progress is not None:
            progress(folder.name, n_images, len(paths))
    return [Score(name, n_images, t[0], t[1], t[2], iou) for name, t in totals.items()]
