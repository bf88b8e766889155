"""Shelf regions and facings of one camera, validated once and frozen.

A config names shelf regions (polygons in pixels) and, within each, facings (polygons).
From YAML or JSON::

    reference: ref.png          # optional: the shelf photographed full
    confirm_frames: 3
    regions:
      - id: top
        polygon: [[10, 10], [390, 10], [390, 110], [10, 110]]
        facings:
          - id: cola
            polygon: [[20, 20], [110, 20], [110, 105], [20, 105]]

How empty a facing looks comes from a scorer: ``scorer: classical`` (the default: change
against the reference, no trained model) or ``scorer: detector`` with ``model`` (a zoo name
or a model file, ``family`` when the file needs it) and either ``gap_class`` (a detector of
empty gaps: the class of a gap, default 0) or ``products: true`` (a detector of products:
what no product box covers is empty), keeping boxes scored ``min_score`` or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.shelf.errors import ShelfError

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Facing:
    """One product facing: where on the image it is, inside which region."""

    region_id: str
    facing_id: str
    polygon: tuple[Point, ...]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Integer pixel box x1, y1, x2, y2 (exclusive) around the polygon."""
        pts = np.asarray(self.polygon)
        x1, y1 = np.floor(pts.min(axis=0)).astype(int)
        x2, y2 = np.ceil(pts.max(axis=0)).astype(int)
        return int(x1), int(y1), int(x2), int(y2)

    def mask(self) -> npt.NDArray[np.bool_]:
        """The polygon as a boolean mask over its bbox."""
        x1, y1, x2, y2 = self.bbox
        m = np.zeros((y2 - y1, x2 - x1), np.uint8)
        pts = np.round(np.asarray(self.polygon) - [x1, y1]).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
        return m.astype(bool)


@dataclass(frozen=True, slots=True)
class ShelfRegion:
    region_id: str
    polygon: tuple[Point, ...]
    facings: tuple[Facing, ...]


@dataclass(frozen=True, slots=True)
class ScorerSpec:
    """Which scorer rates the facings; the detector's model and how its boxes are read."""

    kind: Literal["classical", "detector"] = "classical"
    model: str | None = None  # a zoo name or a model file
    family: str | None = None
    gap_class: int = 0
    products: bool = False
    min_score: float = 0.3


@dataclass(frozen=True, slots=True)
class ShelfConfig:
    """All shelf regions of one camera, with the event debounce settings."""

    regions: tuple[ShelfRegion, ...]
    confirm_frames: int = 3  # frames a new state must hold, unoccluded, before it counts
    empty_above: float = 0.6  # emptiness at or above this reads empty
    full_below: float = 0.4  # at or below this reads full (hysteresis between)
    taken_delta: float = 0.15  # emptiness rise across an occlusion that means "taken"
    reference: Path | None = None
    scorer: ScorerSpec = ScorerSpec()

    @property
    def facings(self) -> tuple[Facing, ...]:
        return tuple(f for r in self.regions for f in r.facings)

    def validate_for(self, width: int, height: int) -> None:
        for f in self.facings:
            x1, y1, x2, y2 = f.bbox
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                raise ShelfError(
                    f"facing {f.region_id}/{f.facing_id} lies outside the {width}x{height} image"
                )


def _polygon(value: Any, where: str) -> tuple[Point, ...]:
    try:
        pts = tuple((float(p[0]), float(p[1])) for p in value)
        if any(len(p) != 2 for p in value):
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ShelfError(f"{where}: polygon must be a list of [x, y] points") from None
    if len(pts) < 3:
        raise ShelfError(f"{where}: polygon needs at least 3 points, got {len(pts)}")
    area = cv2.contourArea(np.asarray(pts, np.float32))
    if area < 4.0:
        raise ShelfError(f"{where}: polygon has no area")
    return pts


def _number(raw: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ShelfError(f"{key}: must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def parse_config(raw: Any, base: Path | None = None) -> ShelfConfig:
    """Validate a parsed YAML/JSON mapping; errors name the offending key."""
    if not isinstance(raw, Mapping):
        raise ShelfError("shelf config must be a mapping with a 'regions' list")
    known = {"regions", "confirm_frames", "empty_above", "full_below", "taken_delta", "reference",
             *DETECTOR_KEYS, "scorer"}
    unknown = set(raw) - known
    if unknown:
        raise ShelfError(f"unknown shelf config key(s): {', '.join(sorted(map(str, unknown)))}")
    regions_raw = raw.get("regions")
    if not isinstance(regions_raw, list) or not regions_raw:
        raise ShelfError("regions: must be a non-empty list")
    regions: list[ShelfRegion] = []
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(regions_raw):
        where = f"regions[{i}]"
        if not isinstance(r, Mapping) or "id" not in r:
            raise ShelfError(f"{where}: needs an 'id'")
        rid = str(r["id"])
        rpoly = _polygon(r.get("polygon"), f"{where}.polygon")
        facings_raw = r.get("facings")
        if not isinstance(facings_raw, list) or not facings_raw:
            raise ShelfError(f"{where}.facings: must be a non-empty list")
        facings: list[Facing] = []
        for j, f in enumerate(facings_raw):
            fw = f"{where}.facings[{j}]"
            if not isinstance(f, Mapping) or "id" not in f:
                raise ShelfError(f"{fw}: needs an 'id'")
            key = (rid, str(f["id"]))
            if key in seen:
                raise ShelfError(f"{fw}: duplicate facing id {key[1]!r} in region {rid!r}")
            seen.add(key)
            facings.append(Facing(rid, key[1], _polygon(f.get("polygon"), f"{fw}.polygon")))
        regions.append(ShelfRegion(rid, rpoly, tuple(facings)))
    confirm = raw.get("confirm_frames", 3)
    if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
        raise ShelfError(f"confirm_frames: must be a positive integer, got {confirm!r}")
    empty_above = _number(raw, "empty_above", 0.6, 0.0, 1.0)
    full_below = _number(raw, "full_below", 0.4, 0.0, 1.0)
    if full_below > empty_above:
        raise ShelfError("full_below: must not exceed empty_above")
    reference = raw.get("reference")
    ref_path = None
    if reference is not None:
        ref_path = Path(str(reference))
        if base is not None and not ref_path.is_absolute():
            ref_path = base / ref_path
    return ShelfConfig(
        regions=tuple(regions),
        confirm_frames=confirm,
        empty_above=empty_above,
        full_below=full_below,
        taken_delta=_number(raw, "taken_delta", 0.15, 0.0, 1.0),
        reference=ref_path,
        scorer=parse_scorer(raw, base),
    )


DETECTOR_KEYS = ("model", "family", "gap_class", "products", "min_score")


def model_path(model: str, base: Path | None) -> str:
    """A model file given relative, taken relative to ``base``; a zoo name unchanged."""
    from edgetally.models.zoo import zoo

    if base is None or model in zoo() or Path(model).is_absolute():
        return model
    return str(base / model)


def parse_scorer(raw: Mapping[str, Any], base: Path | None = None) -> ScorerSpec:
    """The scorer keys of a shelf config (``scorer``, ``model``, ...); errors name the key."""
    kind = raw.get("scorer", "classical")
    if kind not in ("classical", "detector"):
        raise ShelfError(f"scorer: must be 'classical' or 'detector', got {kind!r}")
    if kind == "classical":
        extra = [k for k in DETECTOR_KEYS if k in raw]
        if extra:
            raise ShelfError(f"{extra[0]}: only with scorer: detector")
        return ScorerSpec()
    model = raw.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ShelfError("model: a detector scorer needs a model (a zoo name or a model file)")
    family = raw.get("family")
    if family is not None and not isinstance(family, str):
        raise ShelfError(f"family: must be a model family name, got {family!r}")
    products = raw.get("products", False)
    if not isinstance(products, bool):
        raise ShelfError(f"products: must be true or false, got {products!r}")
    gap_class = raw.get("gap_class", 0)
    if isinstance(gap_class, bool) or not isinstance(gap_class, int) or gap_class < 0:
        raise ShelfError(f"gap_class: must be a class index (0 or more), got {gap_class!r}")
    if products and "gap_class" in raw:
        raise ShelfError("gap_class: not with products: true (every product class counts)")
    return ScorerSpec(
        kind="detector",
        model=model_path(model, base),
        family=family,
        gap_class=gap_class,
        products=products,
        min_score=_number(raw, "min_score", 0.3, 0.0, 1.0),
    )


def load_config(path: Path) -> ShelfConfig:
    """Read a YAML or JSON shelf config file."""
    import yaml

    if not path.is_file():
        raise ShelfError(f"shelf config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ShelfError(f"{path}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    return parse_config(raw, base=path.parent)
