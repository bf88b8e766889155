"""End to end on a real clip: the broker goes away and comes back, the device is killed
(SIGKILL) while messages wait in its outbox and is started again; at the end the fleet
holds exactly the buckets the device produced, none lost and none twice.

The receiving side is the fleet manager itself (its ingest is a persistent-session QoS 1
subscriber) storing into DuckDB, on a Mosquitto with persistence on, so that it misses
nothing while the broker restarts."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.server import FleetServer
from edgetally.ports import free_port

from tests.conftest import Broker
from tests.runtime.uplink.test_publisher import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    data = tmp_path / "mosquitto-data"
    data.mkdir()
    conf = tmp_path / "mosquitto.conf"
    # Started as root, Mosquitto would drop to its own user, which cannot write into pytest's
    # private temp folder: its persistence (the fleet's queued messages) would silently fail.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{run_as}listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {data}/\nmax_queued_messages 100000\n"
    )
    broker = Broker(port=port, config=conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def outbox_state(path: Path) -> tuple[int, int]:
    """(rows waiting, next sequence), read the way an operator would, with sqlite3."""
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(path, timeout=30)
    try:
        waiting = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(waiting), int(row[0]) if row else 0
    except sqlite3.OperationalError:  # tables not created yet
        return 0, 0
    finally:
        db.close()


def test_broker_outage_and_sigkill_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, durable_broker: Broker, vtest_avi: Path
) -> None:
    broker = durable_broker
    outbox = tmp_path / "outbox.db"
    args = [
        sys.executable,
        "-m",
        "edgetally",
        "device",
        "run",
        str(vtest_avi),
        "--line",
        "door=380,100,380,576",
        "--site",
        "shop-1",
        "--device-id",
        "dev-1",
        "--broker",
        broker.url,
        "--outbox",
        str(outbox),
        "--bucket-seconds",
        "1",
        "--max-frames",
        "300",
        "--realtime",
        "--drain-timeout",
        "120",
        "--json",
    ]
    fleet = FleetServer(
        FleetConfig.of(broker.url, str(tmp_path / "fleet.duckdb"), "127.0.0.1:0")
    ).start()

    def aggs() -> list[tuple[int, str, str, datetime, int, int]]:
        table = fleet.store.fetch(
            "SELECT seq, source, line, start, in_count, out_count FROM aggregates "
            "WHERE site = ? AND device = ?",
            ("shop-1", "dev-1"),
        )
        return [tuple(r) for r in table.rows]

    first = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_until(lambda: len(aggs()) >= 3, timeout=180), "device published nothing"

        # 1. The broker goes away: the device keeps counting into its outbox.
        broker.stop()
        assert (tmp_path / "mosquitto-data" / "mosquitto.db").exists(), "no persistence saved"
        waiting, _ = outbox_state(outbox)
        assert wait_until(lambda: outbox_state(outbox)[0] >= waiting + 3, timeout=60)
        assert first.poll() is None

        # 2. It comes back: the device reconnects by itself and drains.
        seen = len(aggs())
        broker.start()
        assert wait_until(lambda: len(aggs()) >= seen + 3, timeout=60), "no reconnect"

        # 3. The broker goes again; the device is killed while rows wait in its outbox.
        broker.stop()
        assert wait_until(lambda: outbox_state(outbox)[0] >= 2, timeout=60)
        assert first.poll() is None, "the device ended before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        waiting_at_kill, seq_at_kill = outbox_state(outbox)
        assert waiting_at_kill >= 2

        # 4. Broker and device start again; the device resumes the clip and drains.
        broker.start()
        second = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr
        report = json.loads(second.stdout)
        waiting, next_seq = outbox_state(outbox)
        assert waiting == 0 and next_seq > seq_at_kill
        stored_all = wait_until(lambda: len(aggs()) >= next_seq, timeout=60)
        missing = sorted(set(range(next_seq)) - {row[0] for row in aggs()})
        assert stored_all, f"missing seqs {missing[:20]}; fleet counters {fleet.counters()}"
        received = aggs()
        counters = fleet.counters()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        fleet.stop()

    by_seq = {row[0]: row for row in received}
    # None lost: every sequence number the device used is stored.
    assert sorted(by_seq) == list(range(next_seq)) and len(received) == next_seq
    # None twice: a redelivered message has the same seq and is dropped as a duplicate; no
    # bucket was produced twice under two sequence numbers; nothing was dead-lettered.
    buckets = [(src, line, start) for _, src, line, start, _, _ in received]
    assert len(buckets) == len(set(buckets))
    assert counters.aggregates_new == next_seq and counters.dead_letters == 0
    # The buckets cover the clip without a hole: consecutive seconds from the first.
    starts = sorted(start for _, _, _, start, _, _ in received)
    assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(starts))
    # The totals the device reports are the sums of what the fleet stored.
    assert report["aggregates"] == next_seq
    assert report["lines"] == [
        {
            "line": "door",
            "in": sum(r[4] for r in received),
            "out": sum(r[5] for r in received),
        }
    ]
