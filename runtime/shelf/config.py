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

The scorer keys sit flat in the file; the model holds them as one :class:`ScorerSpec`
(``scorer``), and errors name the key as it is written in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from edgetally.runtime.errors import deepest_errors
from edgetally.runtime.shelf.errors import ShelfError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

Point = tuple[float, float]
DETECTOR_KEYS = ("model", "family", "gap_class", "products", "min_score")


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
        import cv2

        x1, y1, x2, y2 = self.bbox
        m = np.zeros((y2 - y1, x2 - x1), np.uint8)
        pts = np.round(np.asarray(self.polygon) - [x1, y1]).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
        return m.astype(bool)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _polygon(value: Any) -> tuple[Point, ...]:
    try:
        pts = tuple((float(p[0]), float(p[1])) for p in value)
        if any(len(p) != 2 for p in value):
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ValueError("polygon must be a list of [x, y] points") from None
    if len(pts) < 3:
        raise ValueError(f"polygon needs at least 3 points, got {len(pts)}")
    xs, ys = np.asarray(pts).T
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    if not area >= 4.0:
        raise ValueError("polygon has no area")
    return pts


def _id(value: Any) -> Any:
    """Ids are text; a number written bare in YAML (``id: 1``) is taken as its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _non_empty_list(value: Any) -> Any:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("must be a non-empty list")
    return value


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"must be a number in [0.0, 1.0], got {value!r}")
    return float(value)


ShelfId = Annotated[str, BeforeValidator(_id)]
Polygon = Annotated[tuple[Point, ...], BeforeValidator(_polygon)]
Fraction = Annotated[float, BeforeValidator(_fraction)]


class FacingConfig(_Strict):
    id: ShelfId
    polygon: Polygon


class RegionConfig(_Strict):
    id: ShelfId
    polygon: Polygon
    facings: Annotated[tuple[FacingConfig, ...], BeforeValidator(_non_empty_list)]


class ScorerSpec(_Strict):
    """Which scorer rates the facings; the detector's model and how its boxes are read.

    Validated from the flat keys of a shelf block: ``scorer`` (here ``kind``), ``model``, ...
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["classical", "detector"] = Field(default="classical", validation_alias="scorer")
    model: str | None = None  # a zoo name or a model file
    family: str | None = None
    gap_class: int = 0
    products: bool = False
    min_score: Fraction = 0.3

    @model_validator(mode="before")
    @classmethod
    def _detector_keys_need_a_detector(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            kind = data.get("scorer", data.get("kind", "classical"))
            extra = [k for k in DETECTOR_KEYS if k in data]
            if kind == "classical" and extra:
                raise ValueError(f"{extra[0]}: only with scorer: detector")
        return data

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if value not in ("classical", "detector"):
            raise ValueError(f"must be 'classical' or 'detector', got {value!r}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError("a detector scorer needs a model (a zoo name or a model file)")
        return value

    @field_validator("family", mode="before")
    @classmethod
    def _family(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"must be a model family name, got {value!r}")
        return value

    @field_validator("products", mode="before")
    @classmethod
    def _products(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value

    @field_validator("gap_class", mode="before")
    @classmethod
    def _gap_class(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"must be a class index (0 or more), got {value!r}")
        return value

    @model_validator(mode="after")
    def _detector(self) -> ScorerSpec:
        if self.kind == "detector":
            if self.model is None:
                raise ValueError(
                    "model: a detector scorer needs a model (a zoo name or a model file)"
                )
            if self.products and "gap_class" in self.model_fields_set:
                raise ValueError("gap_class: not with products: true (every product class counts)")
        return self


class ShelfConfig(_Strict):
    """All shelf regions of one camera, with the event debounce settings."""

    regions: Annotated[tuple[RegionConfig, ...], BeforeValidator(_non_empty_list)]
    confirm_frames: int = 3  # frames a new state must hold, unoccluded, before it counts
    empty_above: Fraction = 0.6  # emptiness at or above this reads empty
    full_below: Fraction = 0.4  # at or below this reads full (hysteresis between)
    taken_delta: Fraction = 0.15  # emptiness rise across an occlusion that means "taken"
    reference: Path | None = None
    scorer: ScorerSpec = ScorerSpec()

    @model_validator(mode="before")
    @classmethod
    def _gather_scorer_keys(cls, data: Any) -> Any:
        """The flat scorer keys of the file (``scorer: detector``, ``model``, ...) become
        the one ``scorer`` field; a :class:`ScorerSpec` given whole passes as it is."""
        if not isinstance(data, Mapping) or isinstance(data.get("scorer"), ScorerSpec):
            return data
        keys = ("scorer", *DETECTOR_KEYS)
        out = {k: v for k, v in data.items() if k not in keys}
        out["scorer"] = {k: data[k] for k in keys if k in data}
        return out

    @field_validator("confirm_frames", mode="before")
    @classmethod
    def _confirm(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be a positive integer, got {value!r}")
        return value

    @model_serializer(mode="wrap")
    def _flat_scorer_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped as the file holds it (the scorer keys flat), so a dump validates again."""
        out: dict[str, Any] = handler(self)
        out.pop("scorer", None)
        spec = self.scorer
        if spec.kind == "detector":
            out.update(
                scorer="detector",
                model=spec.model,
                family=spec.family,
                products=spec.products,
                min_score=spec.min_score,
            )
            if not spec.products:
                out["gap_class"] = spec.gap_class
        return out

    @model_validator(mode="after")
    def _consistent(self) -> ShelfConfig:
        if self.full_below > self.empty_above:
            raise ValueError("full_below: must not exceed empty_above")
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(self.regions):
            for j, f in enumerate(r.facings):
                if (r.id, f.id) in seen:
                    raise ValueError(
                        f"regions[{i}].facings[{j}]: duplicate facing id {f.id!r} "
                        f"in region {r.id!r}"
                    )
                seen.add((r.id, f.id))
        return self

    @property
    def facings(self) -> tuple[Facing, ...]:
        return tuple(Facing(r.id, f.id, f.polygon) for r in self.regions for f in r.facings)

    def validate_for(self, width: int, height: int) -> None:
        for f in self.facings:
            x1, y1, x2, y2 = f.bbox
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                raise ShelfError(
                    f"facing {f.region_id}/{f.facing_id} lies outside the {width}x{height} image"
                )

    def relative_to(self, base: Path) -> ShelfConfig:
        """The reference photo and a model file, given relative, taken relative to ``base``."""
        update: dict[str, Any] = {}
        if self.reference is not None and not self.reference.is_absolute():
            update["reference"] = base / self.reference
        if self.scorer.model is not None:
            model = model_path(self.scorer.model, base)
            if model != self.scorer.model:
                update["scorer"] = self.scorer.model_copy(update={"model": model})
        return self.model_copy(update=update) if update else self


def model_path(model: str, base: Path | None) -> str:
    """A model file given relative, taken relative to ``base``; a zoo name unchanged."""
    from edgetally.models.zoo import zoo

    if base is None or model in zoo() or Path(model).is_absolute():
        return model
    return str(base / model)


def _describe(exc: ValidationError, *, flat_scorer: bool) -> str:
    """The first problem as ``key.path: what is wrong`` (and how many more there are).

    With ``flat_scorer`` (a whole shelf config) a scorer error names the flat key of the
    file (``model``), not the field that holds it (``scorer.model``)."""
    errors = deepest_errors(exc.errors(include_url=False, include_input=False))
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    if flat_scorer and loc[:1] == ("scorer",):
        loc = loc[1:]
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else ("." if where else "") + part
    kind, msg = first["type"], str(first["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "missing required key"
    elif kind in ("model_type", "dict_type"):
        msg = "must be a mapping of keys"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def parse_config(raw: Any, base: Path | None = None) -> ShelfConfig:
    """Validate a parsed YAML/JSON mapping; errors name the offending key. Relative paths
    (the reference photo, a model file) are taken relative to ``base`` when given."""
    if not isinstance(raw, Mapping):
        raise ShelfError("shelf config must be a mapping with a 'regions' list")
    try:
        config = ShelfConfig.model_validate(raw)
    except ValidationError as exc:
        raise ShelfError(_describe(exc, flat_scorer=True)) from None
    return config if base is None else config.relative_to(base)


def parse_scorer(raw: Mapping[str, Any]) -> ScorerSpec:
    """The scorer keys of a shelf config (``scorer``, ``model``, ...); errors name the key."""
    try:
        return ScorerSpec.model_validate(raw)
    except ValidationError as exc:
        raise ShelfError(_describe(exc, flat_scorer=False)) from None


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
