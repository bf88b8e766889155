"""The device's outbox: every message is written here first, and leaves only on a PUBACK
that takes it (an MQTT v5 PUBACK with a reason code of 0x80 or above, such as "not
authorized" from the broker's ACL, leaves the row where it is: see ``publisher.py``).

One SQLite file in WAL mode with ``synchronous=FULL``. FULL rather than NORMAL because, in
WAL mode, NORMAL may roll back the last committed transactions on power loss: the
aggregates of those buckets would be lost (the frames are gone), and worse, the stored next
sequence number could go back to one the broker has already acknowledged, so the fleet
would drop the new bucket as a duplicate. FULL costs one fsync per commit; the device
commits once per closed bucket (every 60 s by default), which is nothing.

The per-device sequence number lives in the same file (table ``meta``) and is taken in the
same transaction as the rows that use it: a sequence number is never reused, and no
sequence number is used by a row that was not stored. The file also holds its ``epoch``, a
random id made when the outbox is created and sent with every message: a new outbox (an SD
card re-imaged, a factory reset) starts its sequences at 0 again but under a new epoch, so
the fleet, which keys messages on (site, device, epoch, seq), takes it for a new stream and
never for redeliveries. Aggregates use the ``agg`` sequence;
other message kinds (power telemetry) count on their own (``sequence="power"``), since the
fleet keeps one message per (device, seq) in each kind's table.

The outbox has a cap (messages waiting). A write that would pass it raises
:class:`OutboxFullError`, naming the cap; nothing already stored is ever dropped to make room.
The caller stops collecting rather than lose data silently.

The connection is shared between threads (the publisher deletes rows from paho's network
thread), guarded by one lock.
"""

from __future__ import annotations

import errno
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetally.runtime.errors import EdgeRuntimeError

DEFAULT_MAX_MESSAGES = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    source_key TEXT PRIMARY KEY,
    next_frame INTEGER NOT NULL,
    buckets INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{}'
);
"""


class OutboxError(EdgeRuntimeError):
    """The outbox file cannot be opened, read or written."""


class OutboxFullError(OutboxError):
    """The outbox holds as many messages as its cap allows; nothing was dropped."""


class OutboxFullDiskError(OutboxError):
    """The disk under the outbox is full; what was stored before stays."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored message waiting for the broker's acknowledgement."""

    row_id: int
    seq: int | None
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where an interrupted source resumes: the first frame not yet in a stored bucket."""

    next_frame: int
    buckets: int
    state: str  # JSON, owned by the caller


def _seq_key(sequence: str) -> str:
    """The meta row of a sequence: ``next_seq`` for aggregates (as always), else per kind."""
    if not sequence.isidentifier():
        raise OutboxError(f"invalid sequence name {sequence!r}")
    return "next_seq" if sequence == "agg" else f"next_seq:{sequence}"


# Builds a message's payload once its sequence number is known: (seq, epoch) -> bytes.
PayloadBuilder = Callable[[int, str], bytes]


def new_epoch() -> str:
    """A random outbox epoch: 16 hex digits (64 bits; see ``EPOCH_PATTERN`` of the wire)."""
    return secrets.token_hex(8)


def _write_error(path: Path, exc: sqlite3.Error) -> OutboxError:
    """A write failure in words; a full disk says so (SQLite's own text can be a later
    symptom such as 'cannot rollback - no transaction is active')."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "full" in str(exc).lower():
        return OutboxFullDiskError(
            f"cannot write outbox {path}: the disk is full; nothing stored was lost "
            "(free space, then the device goes on)"
        )
    return OutboxError(f"cannot write outbox {path}: {exc}")


class Outbox:
    """A durable FIFO of (topic, payload) rows with the device's sequence counter."""

    def __init__(self, path: Path, *, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise OutboxError(f"outbox cap must be at least 1 message (got {max_messages})")
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', '0')")
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?)", (new_epoch(),)
            )
            row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
                raise _write_error(self.path, exc) from None
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutboxFullDiskError(
                    f"cannot open outbox {self.path}: the disk is full"
                ) from None
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self.epoch: str = str(row[0])
        self._closed = False

    # ------------------------------------------------------------------ writing

    def put(self, topic: str, build: PayloadBuilder, *, sequence: str = "agg") -> int:
        """Store one sequenced message; returns its sequence number."""
        return self.put_many([(topic, build)], sequence=sequence)[0]

    def put_many(
        self,
        items: Sequence[tuple[str, PayloadBuilder]],
        *,
        checkpoint: tuple[str, Checkpoint] | None = None,
        sequence: str = "agg",
    ) -> list[int]:
        """Store several sequenced messages (and optionally a source checkpoint) in one
        transaction: all of them or none. Raises :class:`OutboxFullError` at the cap.
        ``sequence`` names the counter the messages take their numbers from."""
        key = _seq_key(sequence)
        if not items and checkpoint is None:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    waiting = self._count_locked()
                    if waiting + len(items) > self.max_messages:
                        raise OutboxFullError(
                            f"outbox {self.path} is full: {waiting} messages wait for the "
                            f"broker and the cap is {self.max_messages} (--outbox-max); "
                            f"stopped collecting, nothing was dropped"
                        )
                    seq = self._next_seq_locked(key)
                    seqs: list[int] = []
                    for topic, build in items:
                        payload = build(seq, self.epoch)
                        self._db.execute(
                            "INSERT INTO outbox(seq, topic, payload) VALUES (?, ?, ?)",
                            (seq, topic, payload),
                        )
                        seqs.append(seq)
                        seq += 1
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(seq))
                    )
                    if checkpoint is not None:
                        key, cp = checkpoint
                        self._db.execute(
                            "INSERT OR REPLACE INTO checkpoint(source_key, next_frame, buckets,"
                            " state) VALUES (?, ?, ?, ?)",
                            (key, cp.next_frame, cp.buckets, cp.state),
                        )
                    self._db.execute("COMMIT")
                    return seqs
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _write_error(self.path, exc) from None

    # ------------------------------------------------------------------ reading

    def pending(self, *, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Waiting rows in the order they were written."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, seq, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from None
        return [OutboxRow(int(r[0]), r[1], str(r[2]), bytes(r[3])) for r in rows]

    def rows(self, ids: Sequence[int]) -> list[OutboxRow]:
        """The rows of ``ids`` still waiting, in the order they were written."""
        out: list[OutboxRow] = []
        ids = list(ids)
        for start in range(0, len(ids), 500):  # SQLite's limit on parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                try:
                    found = self._db.execute(
                        f"SELECT id, seq, topic, payload FROM outbox WHERE id IN ({marks})",
                        chunk,
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise OutboxError(f"cannot read outbox {self.path}: {exc}") from None
            out += [OutboxRow(int(r[0]), r[1], str(r[2]), bytes(r[3])) for r in found]
        return sorted(out, key=lambda r: r.row_id)

    def delete(self, row_id: int) -> None:
        """Forget a row: call only once the broker took it (a PUBACK that refuses does not)."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            except sqlite3.Error as exc:
                raise _write_error(self.path, exc) from None

    def count(self) -> int:
        with self._lock:
            return self._count_locked()

    def next_seq(self, sequence: str = "agg") -> int:
        """The sequence number the next stored message of ``sequence`` will get."""
        with self._lock:
            return self._next_seq_locked(_seq_key(sequence))

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, source_key: str) -> Checkpoint | None:
        with self._lock:
            row = self._db.execute(
                "SELECT next_frame, buckets, state FROM checkpoint WHERE source_key = ?",
                (source_key,),
            ).fetchone()
        return None if row is None else Checkpoint(int(row[0]), int(row[1]), str(row[2]))

    def clear_checkpoint(self, source_key: str) -> None:
        """The source was read to its end: a later run starts it from the beginning."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM checkpoint WHERE source_key = ?", (source_key,))
            except sqlite3.Error as exc:
                raise _write_error(self.path, exc) from None

    # ------------------------------------------------------------------ internals

    def _count_locked(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _next_seq_locked(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
