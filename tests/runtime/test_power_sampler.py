"""Power telemetry from the device's outbox to the fleet's store, through a real Mosquitto:
own sequence, one message per bucket, and an estimate never stored as measured."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.energy.assumptions import EnergyConfig
from edgetally.fleet.energy.report import report_from_store
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store.records import Filters
from edgetally.runtime.config import PowerConfig
from edgetally.runtime.power import PowerSampler, open_meter
from edgetally.runtime.uplink.outbox import Outbox
from edgetally.runtime.uplink.publisher import Publisher

from tests.conftest import Broker
from tests.json_support import objs
from tests.runtime.test_device import config, device
from tests.runtime.uplink.test_publisher import wait_until


class SteadyMeter:
    """A measured meter at a fixed power; every third read fails like a flaky bus."""

    source = "rapl"
    measured = True

    def __init__(self, watts: float) -> None:
        self.watts = watts
        self.reads = 0
        self.closed = False

    def read(self) -> PowerReading:
        self.reads += 1
        if self.reads % 3 == 0:
            raise BridgeError("i2c timeout")
        return PowerReading(datetime.now(UTC), self.watts)

    def close(self) -> None:
        self.closed = True


def power_rows(fleet: FleetServer, device: str) -> list[tuple[int, str, bool, float]]:
    table = fleet.store.fetch(
        "SELECT seq, source, measured, wh FROM power WHERE device = ? ORDER BY seq", [device]
    )
    return [(int(s), str(src), bool(m), float(wh)) for s, src, m, wh in table.rows]


def test_outbox_sequences_are_independent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        assert box.put("t/agg", lambda s, e: b"a") == 0
        assert box.put("t/agg", lambda s, e: b"a") == 1
        assert box.put("t/power", lambda s, e: b"p", sequence="power") == 0
        assert box.put("t/agg", lambda s, e: b"a") == 2
    with Outbox(tmp_path / "o.db") as box:  # both survive a restart
        assert box.next_seq() == 3 and box.next_seq("power") == 1


def test_no_power_source_means_no_meter() -> None:
    assert open_meter(PowerConfig(), "mqtt://127.0.0.1:1") is None
    meter = open_meter(PowerConfig(source="estimate", profile="rpi4"), "mqtt://127.0.0.1:1")
    assert meter is not None and meter.source == "estimate" and meter.measured is False
    with pytest.raises(BridgeError, match="serial"):
        open_meter(PowerConfig(source="serial"), "mqtt://127.0.0.1:1")


@pytest.mark.slow
def test_measured_and_estimated_power_reach_the_store_as_such(
    tmp_path: Path, mosquitto: Broker
) -> None:
    fleet_cfg = FleetConfig.of(mosquitto.url, str(tmp_path / "fleet.duckdb"), "127.0.0.1:0")
    with FleetServer(fleet_cfg) as fleet:
        # A device counting with the CPU estimate: its power rides along with its aggregates.
        cfg = config(
            tmp_path,
            mosquitto.url,
            power={"source": "estimate", "profile": "n100", "interval_s": 0.1},
        )
        cfg = cfg.model_copy(
            update={"cameras": (cfg.cameras[0].model_copy(update={"realtime": True}),)}
        )
        report = device(cfg).run()
        assert report.power is not None and not report.power.measured
        assert report.as_json()["power"]["buckets"] == report.power.buckets >= 4

        # A measured meter on another device, sampled beside it.
        meter = SteadyMeter(7.2)
        box = Outbox(tmp_path / "measured.db")
        pub = Publisher(box, mosquitto.url, site="shop-1", device="dev-2")
        pub.start()
        sampler = PowerSampler(
            meter,
            box,
            site="shop-1",
            device="dev-2",
            bucket_seconds=1,
            interval=0.05,
            on_stored=pub.wake,
        )
        sampler.start()
        assert wait_until(lambda: sampler.buckets >= 3)
        summary = sampler.stop()
        assert pub.drain(20) == 0
        pub.stop()
        box.close()
        assert meter.closed and summary.read_errors > 0 and summary.measured

        total = report.power.buckets + summary.buckets
        assert fleet.ingestor.wait_until(lambda c: c.power_new >= total, 20)
        estimated = power_rows(fleet, "dev-1")
        measured = power_rows(fleet, "dev-2")
        # Own sequence per device, from 0, none lost, none twice.
        assert [r[0] for r in estimated] == list(range(report.power.buckets))
        assert [r[0] for r in measured] == list(range(summary.buckets))
        assert all(src == "estimate" and m is False for _, src, m, _ in estimated)
        assert all(src == "rapl" and m is True for _, src, m, _ in measured)
        assert sum(r[3] for r in estimated) == pytest.approx(report.power.wh, rel=1e-6)
        # Every power bucket lasts at most 1 s here, at 7.2 W: at most 2 mWh each.
        assert all(0 < wh <= 7.2 / 3600 + 1e-9 for *_, wh in measured[:-1])
        # The aggregates kept their own numbering.
        aggs = fleet.store.fetch(
            "SELECT count(*), max(seq) FROM aggregates WHERE device = ?", ["dev-1"]
        ).rows[0]
        assert int(aggs[0]) == report.produced == int(aggs[1]) + 1

        ledger = report_from_store(fleet.store, Filters(), EnergyConfig())
        days = objs(ledger["days"])
        labels = {(d["device"], d["edge"]["label"], d["edge"]["measured"]) for d in days}
        assert labels == {("dev-1", "estimated", False), ("dev-2", "measured", True)}


def test_sampler_stop_stores_the_open_bucket(tmp_path: Path) -> None:
    meter = SteadyMeter(3.6)
    with Outbox(tmp_path / "o.db") as box:
        stored = threading.Event()
        sampler = PowerSampler(
            meter,
            box,
            site="s",
            device="d",
            bucket_seconds=3600,
            interval=0.01,
            on_stored=stored.set,
        )
        sampler.start()
        assert wait_until(lambda: meter.reads >= 5)
        summary = sampler.stop()
        assert stored.is_set() and summary.buckets == 1 and box.next_seq("power") == 1
        assert box.next_seq() == 0
        row = box.pending()[0]
        assert row.topic == "edgetally/v1/s/d/power" and b'"measured":true' in row.payload
