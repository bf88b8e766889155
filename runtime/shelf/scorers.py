"""How empty each facing looks: one protocol, a classical baseline and a detector adapter.

A scorer takes the image and the facings and returns one emptiness score in [0, 1] per
facing (0 = as full as the reference, 1 = empty). The classical scorer needs no trained
model: it compares each facing to a reference photo of the full shelf. A detector of empty
gaps (or of products) plugs into the same protocol through :class:`DetectorScorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.shelf.config import Facing, ScorerSpec, ShelfConfig
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.types import Detections

Image = npt.NDArray[np.uint8]
Scores = npt.NDArray[np.float32]
Detect = Callable[[Image], Detections]
# Loads the detector a scorer spec names: (spec) -> a function from an image to its boxes.
DetectorLoader = Callable[[ScorerSpec], Detect]


class FacingScorer(Protocol):
    def score(self, image: Image, facings: Sequence[Facing]) -> Scores:
        """Emptiness in [0, 1] per facing, in the order given."""
        ...


def _gray(image: Image) -> npt.NDArray[np.float32]:
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return g.astype(np.float32)


def _texture(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Gradient magnitude: products carry edges and print, an empty shelf back little."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(np.abs(gx) + np.abs(gy), np.float32)


class ClassicalScorer:
    """Change against a reference of the full shelf, gated by texture loss.

    Per facing: ``loss`` is how much of the reference's texture is gone (mean gradient
    magnitude over mean brightness, so that dimmer light is no loss); ``change`` is the share
    of pixels that differ from the reference by more than ``diff_level`` grey levels after
    matching the facing's mean brightness. Emptiness is ``loss * min(1, change /
    change_full)``: a facing restocked with other products keeps
    its texture (not empty); a lighting change alters no texture (not empty).
    """

    def __init__(
        self,
        reference: Image,
        facings: Sequence[Facing],
        diff_level: float = 25.0,
        change_full: float = 0.15,
    ) -> None:
        self.facings = tuple(facings)
        self.diff_level = diff_level
        self.change_full = change_full
        self._shape = reference.shape[:2]
        self._masks = [f.mask() for f in self.facings]
        gray = _gray(reference)
        tex = _texture(gray)
        self._ref_gray: list[npt.NDArray[np.float32]] = []
        self._ref_tex: list[float] = []
        for f, m in zip(self.facings, self._masks, strict=True):
            x1, y1, x2, y2 = f.bbox
            g = gray[y1:y2, x1:x2][m]
            self._ref_gray.append(g - g.mean())
            self._ref_tex.append(float(tex[y1:y2, x1:x2][m].mean()) / (float(g.mean()) + 10.0))
        if min(self._ref_tex, default=1.0) < 0.01:
            pairs = zip(self.facings, self._ref_tex, strict=True)
            low = [f.facing_id for f, t in pairs if t < 0.01]
            raise ShelfError(f"reference shows no texture in facing(s) {low}: is the shelf full?")

    def score(self, image: Image, facings: Sequence[Facing]) -> Scores:
        if image.shape[:2] != self._shape:
            raise ShelfError(f"image is {image.shape[:2]}, reference was {self._shape}")
        index = {(f.region_id, f.facing_id): i for i, f in enumerate(self.facings)}
        gray = _gray(image)
        out = np.zeros(len(facings), np.float32)
        for k, f in enumerate(facings):
            i = index[(f.region_id, f.facing_id)]
            x1, y1, x2, y2 = f.bbox
            m = self._masks[i]
            crop = gray[y1:y2, x1:x2]
            g = crop[m]
            change = float(np.mean(np.abs((g - g.mean()) - self._ref_gray[i]) > self.diff_level))
            tex = float(_texture(crop)[m].mean()) / (float(g.mean()) + 10.0)
            loss = max(0.0, 1.0 - tex / self._ref_tex[i])
            out[k] = loss * min(1.0, change / self.change_full)
        return out


class DetectorScorer:
    """Emptiness from a detector: the share of each facing covered by boxes of ``gap_class``
    (a detector of empty gaps), or, with ``products=True``, one minus the share covered by
    product boxes."""

    def __init__(
        self,
        detect: Callable[[Image], Detections],
        gap_class: int = 0,
        min_score: float = 0.3,
        products: bool = False,
    ) -> None:
        self.detect = detect
        self.gap_class = gap_class
        self.min_score = min_score
        self.products = products

    def score(self, image: Image, facings: Sequence[Facing]) -> Scores:
        dets = self.detect(image)
        keep = dets.score >= self.min_score
        if not self.products:
            keep &= dets.class_id == self.gap_class
        boxes = dets.xyxy[keep]
        out = np.zeros(len(facings), np.float32)
        for k, f in enumerate(facings):
            x1, y1, x2, y2 = f.bbox
            m = f.mask()
            cover = np.zeros_like(m)
            for bx1, by1, bx2, by2 in boxes:
                cx1, cy1 = max(0, int(bx1) - x1), max(0, int(by1) - y1)
                cx2 = min(x2 - x1, int(np.ceil(bx2)) - x1)
                cy2 = min(y2 - y1, int(np.ceil(by2)) - y1)
                if cx2 > cx1 and cy2 > cy1:
                    cover[cy1:cy2, cx1:cx2] = True
            share = float((cover & m).sum()) / max(1, int(m.sum()))
            out[k] = 1.0 - share if self.products else share
        return out


def load_shelf_detector(
    spec: ScorerSpec, backend: str = "auto", accelerator: str | None = None
) -> Detect:
    """The spec's model through the zoo and the runtime backends, reading the classes the
    shelf needs: the gap class, or with ``products`` every class of the model."""
    from edgetally.runtime.counting.detectors import load_detector

    if spec.model is None:
        raise ShelfError("model: a detector scorer needs a model (a zoo name or a model file)")
    detector = load_detector(
        spec.model, backend, accelerator, spec.family, score_threshold=spec.min_score
    )
    n = len(detector.manifest.labels)
    if spec.products:
        detector.classes = tuple(range(n))
    elif spec.gap_class >= n:
        raise ShelfError(
            f"gap_class: {spec.gap_class} is not a class of {spec.model} ({n} classes)"
        )
    else:
        detector.classes = (spec.gap_class,)
    return detector.detect


def make_scorer(
    config: ShelfConfig, reference: Image, loader: DetectorLoader | None = None
) -> FacingScorer:
    """The scorer a shelf config names: classical against ``reference``, or the detector
    ``loader`` loads (by default :func:`load_shelf_detector` on the automatic backend)."""
    spec = config.scorer
    if spec.kind == "classical":
        return ClassicalScorer(reference, config.facings)
    detect = (loader or load_shelf_detector)(spec)
    return DetectorScorer(
        detect, gap_class=spec.gap_class, min_score=spec.min_score, products=spec.products
    )
