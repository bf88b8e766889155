"""The training loop: augmented photos -> frozen backbone (onnxruntime) -> head (PyTorch).

Every epoch sees each photo once, freshly augmented; the backbone's features are computed on
the fly (a few milliseconds a photo), so nothing is cached on disk. The model written is the
one after the last epoch: a validation folder is only reported on, never used to choose.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from edgetally.models.zoo import InputSpec, ModelManifest, sha256_of, write_sidecar
from edgetally.quantize.shelf_train.augment import Augment, augment, letterbox
from edgetally.quantize.shelf_train.backbone import (
    Backbone,
    TrainError,
    cut_backbone,
    merged_model,
)
from edgetally.quantize.shelf_train.head import GapHead, assign, decode, flatten, grids, loss
from edgetally.quantize.shelf_train.labels import Sample, load_samples

MODEL_FILE = "shelf-gaps.onnx"
LABELS = ["gap"]
NMS_IOU = 0.5  # as the device's detector


@dataclass(frozen=True, slots=True)
class TrainOptions:
    epochs: int = 8
    batch: int = 8
    lr: float = 4e-3
    size: int = 416  # input side (a multiple of 32)
    width: int = 64  # channels of the head's convolutions
    depth: int = 2  # 3x3 convolutions per stride
    seed: int = 0
    min_score: float = 0.3  # validation: boxes scored this or more count (as shelf eval)
    iou: float = 0.3  # validation: IoU that makes a match (as shelf eval)
    augment: Augment = field(default_factory=Augment)


@dataclass(frozen=True, slots=True)
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    obj_loss: float
    box_loss: float
    seconds: float  # since training started
    val_precision: float | None = None
    val_recall: float | None = None
    val_f1: float | None = None

    def to_json(self) -> dict[str, object]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "epoch": self.epoch,
            "loss": r(self.loss),
            "obj_loss": r(self.obj_loss),
            "box_loss": r(self.box_loss),
            "seconds": round(self.seconds, 1),
            "val_precision": r(self.val_precision),
            "val_recall": r(self.val_recall),
            "val_f1": r(self.val_f1),
        }


@dataclass(frozen=True, slots=True)
class TrainResult:
    model: Path
    manifest: Path
    images: int
    boxes: int
    seconds: float
    epochs: list[EpochReport]


class Features:
    """The cut backbone on onnxruntime: a batch of letterboxed BGR images -> three maps."""

    def __init__(self, backbone: Backbone) -> None:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = backbone.save(Path(tmp) / "backbone.onnx")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        self._input = self._session.get_inputs()[0].name

    def __call__(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[torch.Tensor]:
        outs: list[list[npt.NDArray[np.float32]]] = []
        for img in images:  # the graph's batch is 1
            x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)
            outs.append(self._session.run(None, {self._input: x}))
        return [torch.from_numpy(np.concatenate([o[k] for o in outs])) for k in range(3)]


def _read(path: Path) -> npt.NDArray[np.uint8]:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise TrainError(f"cannot read image {path}")
    return np.asarray(img, np.uint8)


def _pixel_boxes(sample: Sample, img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    h, w = img.shape[:2]
    return (sample.boxes * np.array([w, h, w, h], np.float32)).astype(np.float32)


@dataclass(slots=True)
class _Validation:
    """Precomputed features of the validation photos and their true boxes (image pixels)."""

    features: list[list[torch.Tensor]]
    ratios: list[float]
    sizes: list[tuple[int, int]]
    truths: list[npt.NDArray[np.float32]]


def _validation_set(folder: Path, features: Features, size: int) -> _Validation:
    from edgetally.runtime.scoring.shelf import dataset
    from edgetally.runtime.shelf.errors import ShelfError

    val = _Validation([], [], [], [])
    try:
        for _, img, truth in dataset(folder):
            boxed, ratio = letterbox(img, size)
            val.features.append(features([boxed]))
            val.ratios.append(ratio)
            val.sizes.append((img.shape[1], img.shape[0]))
            val.truths.append(truth)
    except ShelfError as exc:
        raise TrainError(f"--val: {exc}") from None
    return val


def _validate(
    head: GapHead, val: _Validation, cells: torch.Tensor, strides: torch.Tensor, opts: TrainOptions
) -> tuple[float, float, float]:
    from edgetally.runtime.counting.detectors import nms
    from edgetally.runtime.scoring.shelf import match

    truths = preds = tp = 0
    head.eval()
    with torch.no_grad():
        for feats, ratio, (w, h), truth in zip(
            val.features, val.ratios, val.sizes, val.truths, strict=True
        ):
            raw = flatten(head(feats))[0]
            score = torch.sigmoid(raw[:, 4]).numpy()
            keep = score >= opts.min_score
            xyxy = decode(raw[None, :, :4], cells, strides)[0].numpy()[keep] / ratio
            xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
            xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
            s = score[keep].astype(np.float32)
            k = nms(xyxy.astype(np.float32), s, np.zeros(len(s), np.int32), NMS_IOU)
            truths += len(truth)
            preds += len(k)
            tp += match(xyxy[k].astype(np.float32), s[k], truth, opts.iou)
    head.train()
    p = tp / preds if preds else 0.0
    r = tp / truths if truths else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _batch(
    samples: Sequence[Sample], rng: np.random.Generator, opts: TrainOptions
) -> tuple[list[npt.NDArray[np.uint8]], list[npt.NDArray[np.float32]]]:
    images, boxes = [], []
    for s in samples:
        img = _read(s.image)
        img, b = augment(img, _pixel_boxes(s, img), rng, opts.augment)
        boxed, ratio = letterbox(img, opts.size)
        images.append(boxed)
        boxes.append((b * ratio).astype(np.float32))
    return images, boxes


def train(
    images_dir: Path,
    labels_dir: Path,
    out_dir: Path,
    backbone_path: Path,
    *,
    val_dir: Path | None = None,
    options: TrainOptions | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    progress: Callable[[str, float, float | None], None] | None = None,
) -> TrainResult:
    """Train a gap detector; write ``out_dir/shelf-gaps.onnx`` and its manifest."""
    opts = options or TrainOptions()
    if opts.epochs < 1:
        raise TrainError(f"--epochs must be at least 1, got {opts.epochs}")
    samples = load_samples(images_dir, labels_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"--out {out_dir} is a file, not a folder")
    start = time.monotonic()
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    backbone = cut_backbone(backbone_path, opts.size)
    features = Features(backbone)
    val = _validation_set(val_dir, features, opts.size) if val_dir is not None else None
    head = GapHead(backbone.channels, opts.width, opts.depth)
    cells, strides = grids(opts.size)
    steps_per_epoch = math.ceil(len(samples) / opts.batch)
    total_steps = opts.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(head.parameters(), lr=opts.lr, weight_decay=5e-4)
    warmup = min(100, total_steps // 5 + 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    reports: list[EpochReport] = []
    step = 0
    for epoch in range(1, opts.epochs + 1):
        order = rng.permutation(len(samples))
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            chosen = [samples[i] for i in order[b * opts.batch : (b + 1) * opts.batch]]
            images, boxes = _batch(chosen, rng, opts)
            feats = features(images)
            targets = [assign(bx, cells, strides) for bx in boxes]
            pred = flatten(head(feats))
            total, obj, box = loss(pred, targets, boxes, cells, strides)
            optimizer.zero_grad()
            total.backward()  # type: ignore[no-untyped-call]  # torch's stubs leave it bare
            optimizer.step()
            schedule.step()
            step += 1
            sums += (total.item(), obj.item(), box.item())
            if progress is not None:
                progress(f"epoch {epoch}/{opts.epochs}", b + 1, steps_per_epoch)
        mean = sums / steps_per_epoch
        p = r = f1 = None
        if val is not None:
            p, r, f1 = _validate(head, val, cells, strides, opts)
        report = EpochReport(
            epoch,
            opts.epochs,
            float(mean[0]),
            float(mean[1]),
            float(mean[2]),
            time.monotonic() - start,
            p,
            r,
            f1,
        )
        reports.append(report)
        if on_epoch is not None:
            on_epoch(report)
    model_path, manifest_path = export(
        backbone,
        head,
        out_dir,
        source=f"edgetally shelf train: {len(samples)} photos of "
        f"{images_dir.name}, {opts.epochs} epochs, {opts.size}x{opts.size}, backbone "
        f"{backbone_path.name}",
    )
    return TrainResult(
        model_path,
        manifest_path,
        len(samples),
        sum(len(s.boxes) for s in samples),
        time.monotonic() - start,
        reports,
    )


def export(backbone: Backbone, head: GapHead, out_dir: Path, source: str) -> tuple[Path, Path]:
    """The merged ONNX and its sidecar manifest, so that the zoo loads it as a YOLOX model."""
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    model: Any = merged_model(backbone, head.conv_params())
    onnx.save(model, str(path))
    manifest = ModelManifest(
        name=path.stem,
        format="onnx",
        family="yolox",
        file=path.name,
        sha256=sha256_of(path),
        input=InputSpec(
            width=backbone.size,
            height=backbone.size,
            layout="NCHW",
            dtype="float32",
            color="BGR",
            resize="letterbox",
            pad_value=114,
        ),
        labels=LABELS,
        person_class=0,
        license="unknown: the training photos' terms apply (backbone YOLOX-Nano, Apache-2.0)",
        source=source,
    )
    return path, write_sidecar(path, manifest)
