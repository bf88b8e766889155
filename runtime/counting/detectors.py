"""Object detectors: a backend plus the pre- and post-processing of the model's family.

The same code runs on the device, in ``edgetally eval`` and in quantize's accuracy gate, so a
quantized model is judged through exactly the processing it will meet in a store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.models.zoo import DEFAULT_DETECTOR, ModelManifest, ResolvedModel, resolve_model
from edgetally.runtime.backends import Backend, open_backend
from edgetally.runtime.errors import BackendError
from edgetally.runtime.types import Detections

Image = npt.NDArray[Any]
Arrays = list[npt.NDArray[np.generic]]


@dataclass(frozen=True, slots=True)
class DetectorInfo:
    model: str
    family: str
    backend: str
    device: str
    precision: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """A model input and what is needed to map its boxes back to the image."""

    tensor: npt.NDArray[np.generic]
    scale_x: float  # input pixels per image pixel
    scale_y: float
    width: int  # image size
    height: int


class Detector:
    """Runs one model on BGR images and returns boxes in image pixels."""

    def __init__(
        self,
        model: ResolvedModel,
        backend: Backend,
        *,
        classes: tuple[int, ...] | None = None,
        score_threshold: float = 0.25,
        nms_iou: float = 0.5,
    ) -> None:
        self.model = model
        self.manifest: ModelManifest = model.manifest
        self.backend = backend
        # Person only by default: the class the counting pipeline needs.
        self.classes = (self.manifest.person_class,) if classes is None else classes
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        spec = backend.inputs[0]
        shape = spec.shape
        self._nhwc = len(shape) == 4 and shape[-1] == 3
        dims = (
            (shape[1], shape[2])
            if self._nhwc
            else (shape[2], shape[3])
            if len(shape) == 4
            else (None, None)
        )
        self._in_h = dims[0] or self.manifest.input.height
        self._in_w = dims[1] or self.manifest.input.width
        self._in_dtype = np.dtype(spec.dtype)
        quant = getattr(backend, "input_quantization", (0.0, 0))
        self._in_scale: float = float(quant[0])
        self._in_zero: int = int(quant[1])
        self._post: Callable[[Arrays, Prepared], Detections] = {
            "yolox": self._post_yolox,
            "tf-ssd": self._post_ssd,
            "tflite-ssd": self._post_ssd,
        }[self.manifest.family]
        self._grid: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        self.info = DetectorInfo(
            model=self.manifest.name,
            family=self.manifest.family,
            backend=backend.info.name,
            device=backend.info.device,
            precision=self.manifest.precision,
        )

    # -- pre-processing ---------------------------------------------------------------
    def prepare(self, image: Image) -> Prepared:
        if image.ndim != 3 or image.shape[2] != 3:
            raise BackendError(f"expected a BGR image HxWx3, got shape {image.shape}")
        h, w = image.shape[:2]
        spec = self.manifest.input
        if spec.color == "RGB":
            image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if spec.resize == "letterbox":
            ratio = min(self._in_w / w, self._in_h / h)
            nw, nh = round(w * ratio), round(h * ratio)
            canvas: npt.NDArray[Any] = np.full(
                (self._in_h, self._in_w, 3), spec.pad_value, np.uint8
            )
            canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            sx = sy = ratio
        else:
            canvas = np.asarray(
                cv2.resize(image, (self._in_w, self._in_h), interpolation=cv2.INTER_LINEAR)
            )
            sx, sy = self._in_w / w, self._in_h / h
        tensor: npt.NDArray[np.generic] = canvas if self._nhwc else canvas.transpose(2, 0, 1)
        tensor = self._cast(np.ascontiguousarray(tensor[None]))
        return Prepared(tensor, sx, sy, w, h)

    def _cast(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
        dtype = self._in_dtype
        if dtype == np.uint8:
            return pixels
        if dtype in (np.int8, np.int16) and self._in_scale:
            # Full-integer model: quantize the float input it was calibrated on.
            real = pixels.astype(np.float32)
            if self.manifest.input.dtype == "uint8":
                # Calibrated on normalised pixels (as TF's converters expect).
                real = real / 255.0
            info = np.iinfo(dtype)
            q = np.round(real / self._in_scale + self._in_zero)
            return np.clip(q, info.min, info.max).astype(dtype)
        return pixels.astype(dtype)

    # -- inference ----------------------------------------------------------------------
    def infer(self, prepared: Prepared) -> Arrays:
        return self.backend.run([prepared.tensor])

    def detect(self, image: Image) -> Detections:
        prepared = self.prepare(image)
        return self.postprocess(self.infer(prepared), prepared)

    def postprocess(self, outputs: Arrays, prepared: Prepared) -> Detections:
        return self._post(outputs, prepared)

    # -- post-processing ---------------------------------------------------------------
    def _grids(self, count: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if self._grid is None or self._grid[0].shape[0] != count:
            grids, strides = [], []
            for stride in (8, 16, 32):
                gh, gw = self._in_h // stride, self._in_w // stride
                xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
                grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
                strides.append(np.full((gh * gw, 1), stride))
            grid = np.concatenate(grids).astype(np.float32)
            stride_arr = np.concatenate(strides).astype(np.float32)
            if grid.shape[0] != count:
                raise BackendError(
                    f"YOLOX output has {count} anchors, expected {grid.shape[0]} for a "
                    f"{self._in_w}x{self._in_h} input: wrong --family?"
                )
            self._grid = (grid, stride_arr)
        return self._grid

    def _post_yolox(self, outputs: Arrays, prepared: Prepared) -> Detections:
        out = np.asarray(outputs[0], dtype=np.float32)
        if out.ndim != 3 or out.shape[2] < 6:
            raise BackendError(f"unexpected YOLOX output shape {out.shape}: wrong --family?")
        pred = out[0]
        grid, stride = self._grids(pred.shape[0])
        classes = np.asarray(self.classes, dtype=np.int64)
        cls_scores = pred[:, 5 + classes] * pred[:, 4:5]  # (N, K)
        best = cls_scores.argmax(axis=1)
        score = cls_scores[np.arange(len(best)), best]
        keep = score >= self.score_threshold
        if not keep.any():
            return Detections.empty()
        p = pred[keep]
        centre = (p[:, :2] + grid[keep]) * stride[keep]
        size = np.exp(np.clip(p[:, 2:4], -10, 10)) * stride[keep]
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        xyxy[:, [0, 2]] /= prepared.scale_x
        xyxy[:, [1, 3]] /= prepared.scale_y
        return self._finish(xyxy, score[keep], classes[best[keep]], prepared)

    def _post_ssd(self, outputs: Arrays, prepared: Prepared) -> Detections:
        boxes, classes_out, scores = _split_ssd_outputs(self.backend.outputs, outputs)
        cls = np.rint(classes_out).astype(np.int64) - self.manifest.class_offset
        wanted = np.isin(cls, np.asarray(self.classes)) & (scores >= self.score_threshold)
        if not wanted.any():
            return Detections.empty()
        b = boxes[wanted]
        xyxy = np.stack(
            [
                b[:, 1] * prepared.width,
                b[:, 0] * prepared.height,
                b[:, 3] * prepared.width,
                b[:, 2] * prepared.height,
            ],
            axis=1,
        )
        return self._finish(xyxy, scores[wanted], cls[wanted], prepared)

    def _finish(
        self,
        xyxy: npt.NDArray[Any],
        score: npt.NDArray[Any],
        cls: npt.NDArray[Any],
        prepared: Prepared,
    ) -> Detections:
        xyxy = xyxy.astype(np.float32)
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, prepared.width)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, prepared.height)
        valid = (xyxy[:, 2] - xyxy[:, 0] > 1) & (xyxy[:, 3] - xyxy[:, 1] > 1)
        xyxy, score, cls = xyxy[valid], score[valid].astype(np.float32), cls[valid]
        keep = nms(xyxy, score, cls, self.nms_iou)
        return Detections(xyxy[keep], score[keep], cls[keep].astype(np.int32))


def _split_ssd_outputs(
    specs: tuple[Any, ...], outputs: Arrays
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Boxes, classes and scores of a TF detection post-processor, whatever their order."""
    boxes = classes = scores = None
    rank2: list[tuple[str, npt.NDArray[np.float32]]] = []
    for spec, raw in zip(specs, outputs, strict=True):
        arr = np.asarray(raw, dtype=np.float32)
        if arr.ndim == 3 and arr.shape[-1] == 4:
            boxes = arr[0]
        elif arr.ndim == 2:
            rank2.append((spec.name, arr[0]))
    if boxes is None or len(rank2) != 2:
        raise BackendError("unexpected SSD outputs: wrong --family?")
    for name, arr in rank2:
        # TF names the classes tensor "add" (ids + 1) or ":1" (TFLite post-processing).
        if name.endswith(":1") or name.split("/")[-1].startswith("add") or "classes" in name:
            classes = arr
        else:
            scores = arr
    if classes is None or scores is None:
        # Fall back on values: scores lie in [0, 1], class ids are whole numbers.
        a, b = rank2[0][1], rank2[1][1]
        whole_a = bool(np.all(np.equal(np.mod(a, 1), 0)))
        classes, scores = (a, b) if whole_a else (b, a)
    return boxes, classes, scores


def nms(
    xyxy: npt.NDArray[np.float32],
    score: npt.NDArray[np.float32],
    cls: npt.NDArray[Any],
    iou: float,
) -> npt.NDArray[np.intp]:
    """Class-aware non-maximum suppression; indices of the kept boxes, best first."""
    if len(score) == 0:
        return np.zeros((0,), np.intp)
    offset = cls.astype(np.float32)[:, None] * 10000.0  # boxes of different classes never overlap
    boxes = xyxy + offset
    wh = np.stack(
        [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1
    )
    kept = cv2.dnn.NMSBoxes(wh.tolist(), score.tolist(), 0.0, iou)
    return np.asarray(kept, dtype=np.intp).reshape(-1)


def load_detector(
    model: str = DEFAULT_DETECTOR,
    backend: str = "auto",
    device: str | None = None,
    family: str | None = None,
    *,
    score_threshold: float = 0.25,
    backend_config: Any = None,
) -> Detector:
    """A detector for ``--model`` (a zoo name or a file) on ``--backend``/``--device``."""
    resolved = resolve_model(model, family=family)
    loaded = open_backend(resolved.path, resolved.manifest.format, backend, device, backend_config)
    return Detector(resolved, loaded, score_threshold=score_threshold)
