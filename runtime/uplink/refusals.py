"""Rows the broker refused, by cause, and when to try each cause again.

An MQTT v5 PUBACK with a reason code of 0x80 or more says the broker did not take the
message: the row stays in the outbox. Its cause is the topic and the reason (all of
``shop1/cam1``'s buckets refused as "not authorized" are one cause). Sending every refused
row again and again would cost a device on a metered link the same bytes each time for
nothing, so each cause is tried again with one row, its *probe*, after a backoff
(``retry_min`` seconds, doubling at each refused probe up to ``retry_max``), and at once
after a reconnect. When a probe (or any refused row) is taken, its cause *opens*: the
publisher sends the cause's other rows again, until one is refused, which closes it.

One thread (the publisher's pump) changes this; others read the counts, under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

Key = tuple[str, int]  # (topic, reason code)


@dataclass(slots=True)
class Cause:
    topic: str
    code: int
    name: str  # the reason in words: "not authorized"
    delay: float  # seconds from a refused probe to the next one
    retry_at: float  # when the next probe may go (the clock's time)
    probe: int | None = None  # the row sent to test the cause, until its PUBACK
    open: bool = False  # a row of it was taken: its other rows go again


class Refusals:
    """Refused rows (row id -> cause) and the state of each cause."""

    def __init__(
        self,
        retry_min: float,
        retry_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min, self._max = retry_min, max(retry_min, retry_max)
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[int, Key] = {}
        self._causes: dict[Key, Cause] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._rows

    def refused(self, row_id: int, topic: str, code: int, name: str) -> bool:
        """The broker refused ``row_id``; True when its cause is new (say so, once)."""
        key, now = (topic, code), self._clock()
        with self._lock:
            self._rows[row_id] = key
            cause = self._causes.get(key)
            if cause is None:
                self._causes[key] = Cause(topic, code, name, self._min, now + self._min)
                return True
        if cause.probe == row_id:  # still refused: wait longer before the next probe
            cause.probe = None
            cause.delay = min(cause.delay * 2, self._max)
            cause.retry_at = now + cause.delay
        elif cause.open:  # refused again: back to probing
            cause.open = False
            cause.retry_at = now + cause.delay
        return False

    def taken(self, row_id: int) -> bool:
        """The broker took ``row_id``; True when that opened its cause (send the rest)."""
        key = self._rows.get(row_id)
        if key is None:
            return False
        with self._lock:
            del self._rows[row_id]
            cause = self._causes[key]
            if not self._rows:
                self._causes.clear()
        if cause.probe == row_id:
            cause.probe = None
        opened = not cause.open
        cause.open, cause.delay = True, self._min
        return opened

    def reconnected(self) -> None:
        """A new connection: every cause may be probed at once."""
        for cause in list(self._causes.values()):
            cause.retry_at = 0.0

    def probes_due(self, busy: Collection[int], limit: int) -> list[int]:
        """Up to ``limit`` row ids to send as probes now (one per cause whose time came),
        none of them in ``busy`` (in flight); each is marked as its cause's probe."""
        now = self._clock()
        due = [
            c for c in self._causes.values() if not c.open and c.probe is None and c.retry_at <= now
        ][:limit]
        out: list[int] = []
        for cause in due:
            key = (cause.topic, cause.code)
            rows = [r for r, k in self._rows.items() if k == key]
            if not rows:  # every row of it was taken meanwhile
                with self._lock:
                    del self._causes[key]
                continue
            free = [r for r in rows if r not in busy]
            if free:
                cause.probe = min(free)
                out.append(cause.probe)
        return out

    def goes_again(self, row_id: int) -> bool:
        """``row_id`` was refused and its cause is open: send it again."""
        key = self._rows.get(row_id)
        return key is not None and self._causes[key].open

    def summary(self) -> list[tuple[str, int, str, int]]:
        """(topic, code, reason name, rows) of each cause, the most rows first."""
        with self._lock:
            counts: dict[Key, int] = {}
            for key in self._rows.values():
                counts[key] = counts.get(key, 0) + 1
            names = {k: c.name for k, c in self._causes.items()}
        return sorted(
            ((t, c, names[(t, c)], n) for (t, c), n in counts.items()), key=lambda x: -x[3]
        )
