"""Power telemetry on the device: sample a meter about once a second, integrate Wh per
bucket (aligned like the aggregate buckets), and store each closed bucket in the outbox as
a ``.../power`` message with its own sequence. The publisher sends them with the
aggregates; ``measured`` is the meter's own flag, so an estimate stays an estimate.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import EnergyBucket, EnergyIntegrator, PowerMeter
from edgetally.firmware_bridge.telemetry import to_wire
from edgetally.models.topics import topic_for
from edgetally.models.wire import to_json
from edgetally.runtime.config import PowerConfig
from edgetally.runtime.uplink.outbox import Outbox

log = logging.getLogger(__name__)

POWER_SEQUENCE = "power"


def store_power(outbox: Outbox, *, site: str, device: str, bucket: EnergyBucket) -> int:
    """Write one energy bucket to the outbox as a power message; returns its sequence."""
    topic = topic_for(site, device, "power")
    return outbox.put(
        topic,
        lambda seq, epoch: to_json(to_wire(bucket, site, device, seq, epoch)),
        sequence=POWER_SEQUENCE,
    )


@dataclass(frozen=True, slots=True)
class PowerSummary:
    """What the sampler did, for the device's report."""

    source: str
    measured: bool
    buckets: int
    wh: float
    read_errors: int

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "measured": self.measured,
            "buckets": self.buckets,
            "wh": round(self.wh, 6),
            "read_errors": self.read_errors,
        }


class PowerSampler:
    """A thread reading ``meter`` every ``interval`` seconds until :meth:`stop`, which also
    stores the last (partial) bucket. ``on_stored`` is called after each stored bucket."""

    def __init__(
        self,
        meter: PowerMeter,
        outbox: Outbox,
        *,
        site: str,
        device: str,
        bucket_seconds: float,
        interval: float = 1.0,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.meter = meter
        self._outbox = outbox
        self._site, self._device = site, device
        self._interval = interval
        self._on_stored = on_stored
        self._integrator = EnergyIntegrator(meter.source, meter.measured, bucket_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.buckets = 0
        self.stored_wh = 0.0
        self.read_errors = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=3600)  # (monotonic, watts)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def _read_once(self) -> None:
        try:
            reading = self.meter.read()
        except BridgeError as exc:
            self.read_errors += 1
            level = logging.WARNING if self.read_errors % 60 == 1 else logging.DEBUG
            log.log(
                level,
                "power meter %s (%d failed reads): %s",
                self.meter.source,
                self.read_errors,
                exc,
            )
            return
        self._recent.append((time.monotonic(), reading.watts))
        for bucket in self._integrator.add(reading):
            self._store(bucket)

    def mean_watts(self, since: float, until: float | None = None) -> float | None:
        """Mean of the readings taken between two ``time.monotonic()`` instants (measured or
        estimated, as the meter is), or None when there was none."""
        end = time.monotonic() if until is None else until
        watts = [w for t, w in list(self._recent) if since <= t <= end]
        return sum(watts) / len(watts) if watts else None

    def _store(self, bucket: EnergyBucket) -> None:
        store_power(self._outbox, site=self._site, device=self._device, bucket=bucket)
        self.buckets += 1
        self.stored_wh += bucket.wh
        if self._on_stored is not None:
            self._on_stored()

    def _run(self) -> None:
        try:
            while True:
                self._read_once()
                if self._stop.wait(self._interval):
                    break
            self._read_once()  # the energy up to the moment of stopping
            last = self._integrator.flush()
            if last is not None:
                self._store(last)
        except BaseException as exc:  # handed to stop()'s caller
            log.error("power sampler stopped: %s", exc)
            self._error = exc

    def stop(self) -> PowerSummary:
        """Stop sampling, store the open bucket, close the meter; re-raise a storing error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.meter.close()
        if self._error is not None:
            raise self._error
        return PowerSummary(
            self.meter.source,
            self.meter.measured,
            self.buckets,
            self.stored_wh,
            self.read_errors,
        )


def open_meter(config: PowerConfig, device_broker: str) -> PowerMeter | None:
    """The configured meter (``auto``: the first that works, else the estimate), or None
    when power telemetry is off. An explicit source that cannot be read is a BridgeError."""
    from edgetally.firmware_bridge.sources import SourceOptions, open_source

    if config.source == "none":
        return None
    options = SourceOptions(
        plug_broker=config.plug_broker or (device_broker if config.plug_topic else None),
        plug_topic=config.plug_topic,
        serial_port=config.serial_port,
        serial_baud=config.serial_baud,
        profile=config.profile,
        idle_w=config.idle_w,
        max_w=config.max_w,
    )
    if config.rail:
        options = dataclasses.replace(options, rail=config.rail)
    meter = open_source(config.source, options)
    kind = "measured" if meter.measured else "estimated"
    log.info("power telemetry: %s (%s), read every %.1f s", meter.source, kind, config.interval_s)
    return meter
