"""A camera's shelves on the device: frames and the person detector's boxes in, shelf
messages out, one bucket at a time (aligned like the footfall buckets).

The reference (the shelf full) is the configured photo, or else the first frame the camera
delivers: start the device when the shelf is stocked. A ``scorer: detector`` shelf loads its
model on the first frame, on the device's backend and accelerator. The person boxes gate
the shelf logic (:mod:`edgetally.runtime.shelf.monitor`): a body in front of a facing is not
an empty one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import cv2
import numpy as np
from edgetally.models.wire import FacingCounts, ShelfState, to_json
from edgetally.runtime.shelf.buckets import ShelfAggregator, ShelfBucket
from edgetally.runtime.shelf.config import ShelfConfig
from edgetally.runtime.shelf.errors import ShelfError
from edgetally.runtime.shelf.monitor import ShelfMonitor
from edgetally.runtime.shelf.scorers import (
    DetectorLoader,
    Image,
    load_shelf_detector,
    make_scorer,
)

# Facings per message: with the longest ids (64 characters) 24 facings stay well under the
# wire's payload cap; a camera with more facings sends several messages per bucket.
FACINGS_PER_MESSAGE = 24

PayloadBuilder = Callable[[int, str], bytes]  # (seq, epoch) -> payload, as the outbox calls it


class ShelfWatch:
    """Shelf events of one camera, closed into :class:`ShelfBucket` s."""

    def __init__(
        self,
        config: ShelfConfig,
        bucket_seconds: float,
        *,
        backend: str = "auto",
        accelerator: str | None = None,
        detector_loader: DetectorLoader | None = None,
    ) -> None:
        self.config = config
        self.detector_loader: DetectorLoader = detector_loader or (
            lambda spec: load_shelf_detector(spec, backend, accelerator)
        )
        self.aggregator = ShelfAggregator(
            [(f.region_id, f.facing_id) for f in config.facings], bucket_seconds
        )
        self._monitor: ShelfMonitor | None = None

    @property
    def monitor(self) -> ShelfMonitor | None:
        """The shelf logic with its scorer, once the first frame has started it."""
        return self._monitor

    def _start(self, image: Image) -> ShelfMonitor:
        reference = image
        if self.config.reference is not None:
            loaded = cv2.imread(str(self.config.reference), cv2.IMREAD_COLOR)
            if loaded is None:
                raise ShelfError(f"cannot read the shelf reference {self.config.reference}")
            if loaded.shape[:2] != image.shape[:2]:
                raise ShelfError(
                    f"the shelf reference {self.config.reference} is {loaded.shape[1]}x"
                    f"{loaded.shape[0]}, the camera's frames {image.shape[1]}x{image.shape[0]}"
                )
            reference = np.asarray(loaded, np.uint8)
        h, w = image.shape[:2]
        self.config.validate_for(w, h)
        scorer = make_scorer(self.config, reference, self.detector_loader)
        return ShelfMonitor(self.config, scorer)

    def update(
        self,
        image: Image,
        persons: Iterable[tuple[float, float, float, float]],
        frame_index: int,
        timestamp: datetime,
    ) -> list[ShelfBucket]:
        """One frame and the person boxes on it (pixel xyxy); returns the closed buckets."""
        if self._monitor is None:
            self._monitor = self._start(image)
        boxes = np.asarray(list(persons), np.float32).reshape(-1, 4)
        return self.aggregator.add(self._monitor.update(image, boxes, frame_index, timestamp))

    def flush(self) -> ShelfBucket | None:
        return self.aggregator.flush()


def shelf_messages(
    bucket: ShelfBucket, *, site: str, device: str, source: str
) -> list[PayloadBuilder]:
    """Payload builders (seq -> bytes) of one bucket: one message per group of facings."""
    facings = [
        FacingCounts(
            region=f.region_id,  # type: ignore[arg-type]  # pydantic validates it
            facing=f.facing_id,  # type: ignore[arg-type]  # pydantic validates it
            facing_empty=f.facing_empty,
            restocked=f.restocked,
            product_taken=f.product_taken,
            empty_at_end=f.empty_at_end,
        )
        for f in bucket.facings
    ]
    seconds = max(1, round((bucket.end - bucket.start).total_seconds()))
    groups = [
        tuple(facings[i : i + FACINGS_PER_MESSAGE])
        for i in range(0, len(facings), FACINGS_PER_MESSAGE)
    ]

    def builder(group: tuple[FacingCounts, ...]) -> PayloadBuilder:
        return lambda seq, epoch: to_json(
            ShelfState(
                site=site,  # type: ignore[arg-type]  # pydantic validates it
                device=device,  # type: ignore[arg-type]  # pydantic validates it
                source=source,  # type: ignore[arg-type]  # pydantic validates it
                seq=seq,  # type: ignore[arg-type]  # pydantic validates it
                epoch=epoch,  # type: ignore[arg-type]  # pydantic validates it
                start=bucket.start,
                seconds=seconds,
                facings=group,
            )
        )

    return [builder(g) for g in groups]
