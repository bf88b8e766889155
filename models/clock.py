"""The bucket clock both sides count by: time buckets of a whole number of seconds, aligned
to the Unix epoch (UTC), so a 60 s bucket starts on every whole minute wherever it is cut."""

from __future__ import annotations

import math
from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start_s(epoch_s: float, seconds: float) -> float:
    """The start (seconds since the epoch) of the ``seconds``-long bucket holding
    ``epoch_s``."""
    return math.floor(epoch_s / seconds) * seconds


def bucket_start(ts: datetime, seconds: float) -> datetime:
    """The start of the ``seconds``-long bucket holding ``ts`` (UTC-aware)."""
    return datetime.fromtimestamp(bucket_start_s(ts.timestamp(), seconds), UTC)
