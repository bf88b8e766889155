"""Where rollout records live: the fleet's database (:class:`StoreRecords`, what ``fleet
serve --rollouts`` uses, so every api process reads the same rollouts), or a folder of JSON
files (:class:`FileRecords`, the earlier layout, imported into the database once).

Rollouts run in exactly one process: :meth:`StoreRecords.claim` takes a PostgreSQL advisory
lock held for the life of the store's connection, and a second process asking for it is
refused (a DuckDB file has one process anyway).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from edgetally.fleet.rollout.plan import Rollout, RolloutError
from edgetally.fleet.store.base import Store, StoreError

# Any constant both sides agree on: the key of the "rollouts run here" advisory lock.
ROLLOUT_LOCK_KEY = 0x65_74_72_6F  # "etro"
_TABLE = """CREATE TABLE IF NOT EXISTS rollouts (
    id VARCHAR NOT NULL PRIMARY KEY, state VARCHAR NOT NULL, record VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL)"""


class RolloutRecords(Protocol):
    """Rollout records by id: the JSON of :class:`~edgetally.fleet.rollout.plan.Rollout`."""

    def get(self, rollout_id: str) -> str | None: ...

    def put(self, rollout: Rollout) -> None: ...

    def ids(self) -> list[str]: ...


class FileRecords:
    """``<dir>/<id>.json``, written atomically (temporary file, fsync, rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, rollout_id: str) -> str | None:
        try:
            return (self.directory / f"{rollout_id}.json").read_text()
        except FileNotFoundError:
            return None

    def put(self, rollout: Rollout) -> None:
        path = self.directory / f"{rollout.id}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(rollout.model_dump_json(indent=1))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))


class StoreRecords:
    """The ``rollouts`` table of the fleet's store (made when missing)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        try:
            store.execute(_TABLE)
        except StoreError as exc:
            raise RolloutError(f"cannot keep rollouts in {store.description}: {exc}") from None

    def claim(self) -> None:
        """Be the one process that runs rollouts on this database, or a RolloutError."""
        if self.store.dialect.name != "postgres":
            return
        got = self.store.fetch("SELECT pg_try_advisory_lock(?)", [ROLLOUT_LOCK_KEY]).rows
        if not got or not got[0][0]:
            raise RolloutError(
                "rollouts already run in another fleet process on this database: pass "
                "--rollouts to one api process only"
            )

    def get(self, rollout_id: str) -> str | None:
        rows = self.store.fetch("SELECT record FROM rollouts WHERE id = ?", [rollout_id]).rows
        return str(rows[0][0]) if rows else None

    def put(self, rollout: Rollout) -> None:
        self.store.execute(
            "INSERT INTO rollouts (id, state, record, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record, "
            "updated_at = excluded.updated_at",
            [
                rollout.id,
                rollout.state,
                rollout.model_dump_json(),
                datetime.now(UTC).replace(tzinfo=None),
            ],
        )

    def ids(self) -> list[str]:
        return [str(r[0]) for r in self.store.fetch("SELECT id FROM rollouts ORDER BY id").rows]

    def import_files(self, files: FileRecords) -> int:
        """Copy the records of a rollout folder not in the table yet; how many were."""
        known = set(self.ids())
        n = 0
        for rollout_id in files.ids():
            if rollout_id in known:
                continue
            text = files.get(rollout_id)
            if text is None:
                continue
            self.put(Rollout.model_validate_json(text))
            n += 1
        return n
