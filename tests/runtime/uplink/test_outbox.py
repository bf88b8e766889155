"""The outbox: durable, sequenced, capped loudly, never drops."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from edgetally.models.wire import EPOCH_PATTERN
from edgetally.runtime.uplink.outbox import (
    Checkpoint,
    Outbox,
    OutboxError,
    OutboxFullDiskError,
    OutboxFullError,
)


def _payload(seq: int, epoch: str) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


def test_sequence_increases_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        assert box.put("t/a", _payload) == 0
        assert box.put_many([("t/a", _payload), ("t/b", _payload)]) == [1, 2]
        rows = box.pending()
        assert [r.seq for r in rows] == [0, 1, 2]
        assert rows[2].topic == "t/b" and rows[2].payload == b'{"seq": 2}'
        for r in rows:
            box.delete(r.row_id)
        assert box.count() == 0
    with Outbox(path) as box:
        # Everything was delivered and deleted: the next number is still never reused.
        assert box.next_seq() == 3
        assert box.put("t/a", _payload) == 3


def test_pending_is_in_order_and_pages(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.put_many([("t", _payload)] * 10)
        first = box.pending(limit=4)
        rest = box.pending(after_id=first[-1].row_id, limit=100)
        assert [r.seq for r in first + rest] == list(range(10))


def test_a_failing_batch_stores_nothing_and_uses_no_sequence(tmp_path: Path) -> None:
    def bad(seq: int, epoch: str) -> bytes:
        raise ValueError("boom")

    with Outbox(tmp_path / "o.db") as box:
        with pytest.raises(ValueError):
            box.put_many([("t", _payload), ("t", bad)])
        assert box.count() == 0
        assert box.next_seq() == 0


def test_cap_refuses_loudly_and_keeps_what_is_stored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_messages=3) as box:
        box.put_many([("t", _payload)] * 2)
        with pytest.raises(OutboxFullError, match=r"cap is 3"):
            box.put_many([("t", _payload)] * 2)
        assert box.count() == 2
        assert box.next_seq() == 2
        box.put("t", _payload)  # exactly at the cap is fine
        with pytest.raises(OutboxFullError, match="nothing was dropped"):
            box.put("t", _payload)
        assert [r.seq for r in box.pending()] == [0, 1, 2]


def test_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put("t", _payload)
        assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_checkpoint_is_written_with_the_rows(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        assert box.checkpoint("cam") is None
        box.put_many([("t", _payload)], checkpoint=("cam", Checkpoint(42, 1, '{"a": 1}')))
        assert box.checkpoint("cam") == Checkpoint(42, 1, '{"a": 1}')
        box.clear_checkpoint("cam")
        assert box.checkpoint("cam") is None


def test_rows_survive_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from edgetally.runtime.uplink.outbox import Outbox\n"
        f"box = Outbox(Path({str(path)!r}))\n"
        "for i in range(20):\n"
        "    box.put('t', lambda s, e: b'x')\n"
        "os._exit(0)  # no close, no checkpoint of the WAL\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with Outbox(path) as box:
        assert box.count() == 20
        assert box.next_seq() == 20


def test_unopenable_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "dir.db")
    with pytest.raises(OutboxError, match="at least 1"):
        Outbox(tmp_path / "x.db", max_messages=0)


def test_not_an_sqlite_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(bad)
    assert isinstance(sqlite3.Error(), Exception)


def test_epoch_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    seen: list[str] = []

    def payload(seq: int, e: str) -> bytes:
        seen.append(e)
        return b"x"

    with Outbox(path) as box:
        epoch = box.epoch
        assert re.fullmatch(EPOCH_PATTERN, epoch)
        box.put("t", payload)
    with Outbox(path) as box:
        assert box.epoch == epoch  # reopened: the same stream
    assert seen == [epoch]
    path.unlink()
    with Outbox(path) as box:  # a new outbox (re-imaged device): a new stream from seq 0
        assert box.epoch != epoch
        assert box.put("t", _payload) == 0


def test_a_full_disk_is_named_and_nothing_stored_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put_many([("t", _payload)] * 3)
        pages = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # the file may not grow
        with pytest.raises(OutboxFullDiskError, match="the disk is full"):
            box.put_many([("t", lambda s, e: bytes(64_000))] * 3)
        assert box.count() == 3
        assert [r.seq for r in box.pending()] == [0, 1, 2]
        assert box.next_seq() == 3  # no number was used by what was not stored


def test_a_full_filesystem_is_named(tmp_path: Path) -> None:
    """On a real filesystem that fills up (a small tmpfs, where this may mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with Outbox(mnt / "o.db") as box:
            box.put_many([("t", _payload)] * 5)
            with pytest.raises(OutboxError, match="the disk is full"):
                for _ in range(200):
                    box.put("t", lambda s, e: bytes(8_000))
            stored = box.count()
            assert stored >= 5
        with Outbox(mnt / "o.db") as box:  # reopened: everything committed is there
            assert box.count() == stored
            assert [r.seq for r in box.pending(limit=5)] == [0, 1, 2, 3, 4]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
