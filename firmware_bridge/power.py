"""The power-meter protocol, and what turns its readings into watt-hours.

A meter is read about once a second. Each reading carries the instantaneous (or
interval-average) power and, when the hardware keeps an energy counter (RAPL, the serial
MCU), the energy since the previous reading, which is then used as is. Otherwise the energy
between two readings is the trapezoid of their watts. :class:`EnergyIntegrator` cuts that
energy into fixed time buckets aligned like the aggregates (e.g. 60 s), so a device can send
one power message per aggregate bucket.

A meter says whether it measures (``measured=True``) or estimates; an estimate is never
labelled as a measurement anywhere downstream.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.models.clock import bucket_start

log = logging.getLogger(__name__)

J_PER_WH = 3600.0


@dataclass(frozen=True, slots=True)
class PowerReading:
    """One reading of a meter.

    ``watts`` is the power now (or averaged since the previous reading); ``energy_j`` the
    energy since the previous reading when the meter has a counter, else None.
    """

    at: datetime  # UTC-aware
    watts: float
    energy_j: float | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("PowerReading.at must be timezone-aware (UTC)")
        if not math.isfinite(self.watts) or self.watts < 0:
            raise ValueError(f"power must be a finite, non-negative number, got {self.watts}")


@runtime_checkable
class PowerMeter(Protocol):
    """Anything that can be read for watts. ``read`` raises BridgeError when it cannot."""

    @property
    def source(self) -> str:
        """Short name of the source: rapl, hwmon, pi5, plug, serial, estimate."""
        ...

    @property
    def measured(self) -> bool:
        """True for a physical measurement, False for an estimate."""
        ...

    def read(self) -> PowerReading: ...

    def close(self) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EnergyBucket:
    """Energy over one time bucket: what a power telemetry message carries."""

    start: datetime  # UTC-aware, aligned to bucket_seconds
    seconds: float  # bucket length
    covered_seconds: float  # how much of the bucket readings actually covered
    wh: float
    source: str
    measured: bool

    @property
    def watts(self) -> float:
        """Mean power over the covered part of the bucket."""
        if self.covered_seconds <= 0:
            return 0.0
        return self.wh * J_PER_WH / self.covered_seconds


@dataclass
class _Open:
    start: datetime
    joules: float = 0.0
    covered: float = 0.0


@dataclass
class EnergyIntegrator:
    """Integrates readings into Wh per aligned bucket; returns buckets as they close.

    An interval between two readings that spans a bucket boundary is split in
    proportion to time. Readings that go back in time are ignored and counted.
    """

    source: str
    measured: bool
    bucket_seconds: float = 60.0
    out_of_order: int = 0
    total_j: float = 0.0
    total_seconds: float = 0.0
    _last: PowerReading | None = None
    _open: _Open | None = None
    _buckets: list[EnergyBucket] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0:
            raise BridgeError(f"bucket length must be positive, got {self.bucket_seconds}")

    def add(self, reading: PowerReading) -> list[EnergyBucket]:
        """Add a reading; return the buckets that this reading closed."""
        last = self._last
        if last is not None and reading.at <= last.at:
            self.out_of_order += 1
            return []
        self._last = reading
        if last is None:
            self._open = _Open(bucket_start(reading.at, self.bucket_seconds))
            return []
        dt = (reading.at - last.at).total_seconds()
        if reading.energy_j is not None:
            joules = reading.energy_j
        else:
            joules = (last.watts + reading.watts) / 2.0 * dt
        self.total_j += joules
        self.total_seconds += dt
        return self._spread(last.at, reading.at, joules)

    def _spread(self, t0: datetime, t1: datetime, joules: float) -> list[EnergyBucket]:
        closed: list[EnergyBucket] = []
        span = (t1 - t0).total_seconds()
        cursor = t0
        assert self._open is not None
        while cursor < t1:
            bucket_end = self._open.start + timedelta(seconds=self.bucket_seconds)
            piece_end = min(bucket_end, t1)
            piece = (piece_end - cursor).total_seconds()
            self._open.joules += joules * piece / span
            self._open.covered += piece
            cursor = piece_end
            if piece_end >= bucket_end:
                closed.append(self._close(self._open))
                self._open = _Open(bucket_end)
        return closed

    def _close(self, bucket: _Open) -> EnergyBucket:
        return EnergyBucket(
            start=bucket.start,
            seconds=self.bucket_seconds,
            covered_seconds=bucket.covered,
            wh=bucket.joules / J_PER_WH,
            source=self.source,
            measured=self.measured,
        )

    def flush(self) -> EnergyBucket | None:
        """Close the open (partial) bucket, if it holds anything."""
        if self._open is None or self._open.covered <= 0:
            return None
        bucket = self._close(self._open)
        self._open = _Open(self._open.start, 0.0, 0.0)
        return bucket

    @property
    def wh(self) -> float:
        return self.total_j / J_PER_WH

    @property
    def last_watts(self) -> float:
        return self._last.watts if self._last is not None else 0.0

    @property
    def mean_watts(self) -> float:
        return self.total_j / self.total_seconds if self.total_seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PowerMeasurement:
    """The result of sampling a meter for a while: `edgetally power read` prints this."""

    source: str
    measured: bool
    watts: float
    wh: float
    seconds: float
    samples: int

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "measured": self.measured,
            "watts": round(self.watts, 4),
            "wh": round(self.wh, 6),
        }


def readings(
    meter: PowerMeter,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[PowerReading]:
    """Read the meter every ``interval`` seconds, forever (the caller stops iterating)."""
    while True:
        yield meter.read()
        sleep(interval)


def sample(
    meter: PowerMeter,
    seconds: float,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PowerMeasurement:
    """Sample ``meter`` for about ``seconds`` and integrate the energy."""
    if not seconds > 0:
        raise BridgeError(f"--seconds must be positive, got {seconds}")
    if not interval > 0:
        raise BridgeError(f"the sampling interval must be positive, got {interval}")
    integ = EnergyIntegrator(meter.source, meter.measured, bucket_seconds=max(seconds, 1.0))
    count = 0
    first: datetime | None = None
    for reading in readings(meter, interval, sleep):
        integ.add(reading)
        count += 1
        first = first or reading.at
        if (reading.at - first).total_seconds() >= seconds - interval / 2:
            break
    watts = integ.mean_watts if count > 1 else integ.last_watts
    return PowerMeasurement(
        source=meter.source,
        measured=meter.measured,
        watts=watts,
        wh=integ.wh,
        seconds=integ.total_seconds,
        samples=count,
    )
