"""The model zoo: a manifest per model, and how a name or a file resolves to one.

A manifest says what a model is (task, format, pre/post-processing family, input spec,
labels, license, sha256, where it comes from). ``resolve_model`` turns what a user passed to
``--model`` into a :class:`ResolvedModel`:

- a zoo name (``yolox-nano``): its file is looked up in the Python package that ships it, or
  in the model directories (``EDGETALLY_MODEL_DIRS``, colon-separated, then
  ``~/.cache/edgetally/models``), and its sha256 is checked;
- a file path: a file whose sha256 matches a zoo entry uses that entry's processing; a file
  with a sidecar manifest (``model.onnx.model.json``, as ``edgetally quantize`` writes) uses
  the sidecar; any other file needs ``family`` (and gets a manifest derived from it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from edgetally.models.errors import ModelFileError, UnknownModelError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Family = Literal["yolox", "tf-ssd", "tflite-ssd"]
ModelFormat = Literal["onnx", "openvino", "tflite", "tf-frozen"]
FAMILIES: tuple[str, ...] = ("yolox", "tf-ssd", "tflite-ssd")

COCO80 = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
]
# The 90-id COCO label map of the TF object detection models (ids without a class are "n/a").
_COCO90_MISSING = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82}
COCO90 = ["n/a" if i in _COCO90_MISSING else "" for i in range(90)]
_it = iter(COCO80)
COCO90 = [name if name else next(_it) for name in COCO90]

SIDECAR_SUFFIX = ".model.json"

# The person detector that `count`, `eval`, `device run` and the demo use unless told
# otherwise: the most accurate one shipped inside the package that still runs well over
# 10 frames per second on a small CPU (README, "Models and runtimes", has the numbers).
DEFAULT_DETECTOR = "yolox-nano"


class InputSpec(BaseModel):
    """How an image becomes the model's input tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0, le=4096)
    height: int = Field(gt=0, le=4096)
    layout: Literal["NCHW", "NHWC"]
    dtype: Literal["float32", "uint8", "int8"]
    color: Literal["BGR", "RGB"]
    resize: Literal["letterbox", "stretch"]
    pad_value: int = Field(default=114, ge=0, le=255)


class ModelManifest(BaseModel):
    """What a model is and how to run it. Shared by the device, quantize and bundles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    task: Literal["detection"] = "detection"
    format: ModelFormat
    family: Family
    file: str = Field(min_length=1, max_length=255)
    package: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    labels: list[str]
    person_class: int = Field(ge=0)
    class_offset: int = Field(default=0, ge=0, le=1)
    precision: Literal["fp32", "fp16", "int8", "uint8"] = "fp32"
    license: str = "unknown"
    source: str = ""

    @field_validator("labels", mode="before")
    @classmethod
    def _expand_labels(cls, value: object) -> object:
        if value == "coco80":
            return list(COCO80)
        if value == "coco90":
            return list(COCO90)
        return value


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A manifest and the file on disk it describes."""

    manifest: ModelManifest
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.name


@cache
def zoo() -> dict[str, ModelManifest]:
    """The built-in manifests, by name."""
    raw = json.loads(resources.files("edgetally.models").joinpath("zoo.json").read_text())
    return {name: ModelManifest(name=name, **entry) for name, entry in raw.items()}


def model_dirs() -> list[Path]:
    """Where zoo files are looked for, in order."""
    dirs = [Path(p) for p in os.environ.get("EDGETALLY_MODEL_DIRS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "edgetally" / "models")
    return dirs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror}") from exc
    return digest.hexdigest()


def _package_file(package: str, filename: str) -> Path | None:
    # find_spec locates a package without running its __init__ (which may import
    # frameworks the device does not need).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    return None


def locate(manifest: ModelManifest) -> Path | None:
    """The file of a zoo model on this machine, or None."""
    if manifest.package:
        found = _package_file(manifest.package, manifest.file)
        if found is not None:
            return found
    for directory in model_dirs():
        candidate = directory / manifest.file
        if candidate.is_file():
            return candidate
    return None


@cache
def _hash_index() -> dict[str, str]:
    return {m.sha256: name for name, m in zoo().items() if m.sha256}


def _check_hash(manifest: ModelManifest, path: Path) -> None:
    if manifest.sha256 and sha256_of(path) != manifest.sha256:
        raise ModelFileError(
            f"model file {path} does not match the sha256 of {manifest.name} "
            "(corrupt or a different model)"
        )


def read_sidecar(path: Path) -> ModelManifest | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    try:
        return ModelManifest.model_validate_json(sidecar.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelFileError(f"bad manifest {sidecar}: {where}: {first['msg']}") from exc


def write_sidecar(path: Path, manifest: ModelManifest) -> Path:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    sidecar.write_text(manifest.model_dump_json(indent=2) + "\n")
    return sidecar


def format_of(path: Path) -> ModelFormat:
    suffix = path.suffix.lower()
    formats: dict[str, ModelFormat] = {
        ".onnx": "onnx",
        ".xml": "openvino",
        ".tflite": "tflite",
        ".pb": "tf-frozen",
    }
    if suffix not in formats:
        raise UnknownModelError(
            f"unknown model format {suffix or '(no extension)'} for {path}: "
            "expected .onnx, .xml (OpenVINO IR), .tflite or .pb"
        )
    return formats[suffix]


def resolve_model(spec: str, family: str | None = None) -> ResolvedModel:
    """Resolve ``--model`` (a zoo name or a file path) to a manifest and a file."""
    manifests = zoo()
    if spec in manifests:
        manifest = manifests[spec]
        path = locate(manifest)
        if path is None:
            where = ", ".join(str(d) for d in model_dirs())
            hint = (
                f"install the package {manifest.package}"
                if manifest.package
                else (f"put {manifest.file} in one of: {where} (or set EDGETALLY_MODEL_DIRS)")
            )
            raise ModelFileError(f"model {spec}: file {manifest.file} not found; {hint}")
        _check_hash(manifest, path)
        return ResolvedModel(manifest, path)

    path = Path(spec)
    if not path.exists():
        known = ", ".join(sorted(manifests))
        raise UnknownModelError(
            f"unknown model {spec!r}: not a zoo name ({known}) and no such file"
        )
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file")
    fmt = format_of(path)
    sidecar = read_sidecar(path)
    if sidecar is not None:
        if sidecar.sha256 is not None:
            _check_hash(sidecar, path)
        return ResolvedModel(sidecar, path)
    digest = sha256_of(path)
    name = _hash_index().get(digest)
    if name is not None:
        return ResolvedModel(manifests[name], path)
    if family is None:
        raise UnknownModelError(
            f"{path} is not a known model (sha256 {digest[:12]}...): "
            f"pass --family ({', '.join(FAMILIES)})"
        )
    return ResolvedModel(manifest_for_family(path, fmt, family), path)


def manifest_for_family(path: Path, fmt: ModelFormat, family: str) -> ModelManifest:
    """A manifest for an unknown file, from the defaults of its processing family."""
    if family not in FAMILIES:
        raise UnknownModelError(f"unknown family {family!r}: expected one of {', '.join(FAMILIES)}")
    base = {
        "yolox": zoo()["yolox-nano"],
        "tf-ssd": zoo()["pedestrian-ssdlite"],
        "tflite-ssd": zoo()["ssd-mobilenet-v1-coco-quant"],
    }[family]
    return base.model_copy(
        update={
            "name": path.stem,
            "format": fmt,
            "file": path.name,
            "package": None,
            "sha256": None,
            "source": f"local file {path.name}",
            "license": "unknown",
        }
    )
