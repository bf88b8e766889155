"""Ingest workers: stateless processes that take a share of the broker's messages and write
them to one PostgreSQL (``edgetally fleet serve --role ingest --workers N``).

Each worker is an :class:`~edgetally.fleet.ingest.mqtt.Ingestor` on an MQTT v5 shared
subscription (``$share/<group>/edgetally/#``): the broker hands every message to one member
of the group. A worker keeps nothing of its own: what makes a second delivery harmless is
in the store (keys, counters of stored rows, statuses ordered by their rank). Slot ``i``
always connects as ``<client-id>-<i>``, logging in as ``<user>-<i>`` where the broker URL
names a user (a closed broker makes the client id the user name: each slot needs its own
account, see :func:`~edgetally.fleet.broker_config.service_login`), so a worker restarted
by :class:`WorkerPool` takes back its session and the messages the broker held for it
meanwhile (see the session expiry in :mod:`edgetally.fleet.ingest.mqtt`). Workers on a
second host log in as a user of their own (and take a client id of their own).

Device statuses are not taken here: the api process subscribes to them unshared
(:class:`~edgetally.fleet.server.FleetServer`), which keeps the broker's order of a
device's statuses and its last will.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from edgetally.fleet.broker_config import service_login
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.errors import FleetError
from edgetally.fleet.ingest.mqtt import IngestCounters, Ingestor
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.connect import open_store

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0  # a worker that died is started again after this long


def worker_client_id(config: FleetConfig, slot: int | str) -> str:
    """The MQTT client id of worker ``slot`` (stable: a restart takes back its session)."""
    return service_login(config.broker, config.client_id, slot)[1]


class IngestWorker:
    """One ingest worker in this process: the store, and a shared-subscription Ingestor
    connected as worker ``slot`` (its client id and login: :func:`worker_client_id`)."""

    def __init__(self, config: FleetConfig, slot: int | str = 0) -> None:
        config.check_scale_out()
        self.config = config.for_workers()
        self.slot = slot
        self.client_id = worker_client_id(config, slot)
        self._store: Store | None = None
        self._ingestor: Ingestor | None = None

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            raise FleetError("the ingest worker is not running")
        return self._ingestor

    def counters(self) -> IngestCounters:
        return IngestCounters() if self._ingestor is None else self._ingestor.counters()

    def start(self) -> IngestWorker:
        c = self.config
        self._store = open_store(c.db)
        try:
            self._ingestor = Ingestor(
                self._store,
                c.ingest_config(self.slot, shared=True),
            )
            self._ingestor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Store what was received, then close (unacknowledged messages stay the broker's)."""
        if self._ingestor is not None:
            self._ingestor.stop()
            self._ingestor = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> IngestWorker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def run_worker(config: FleetConfig, slot: int) -> None:
    """A worker process's body: ingest as worker ``slot`` until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.WARNING, format="edgetally: %(message)s")
    done = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with IngestWorker(config, slot):
        done.wait()


class WorkerPool:
    """``workers`` ingest processes (slots 0 to ``workers - 1``), each started again in its
    slot when it dies, until :meth:`stop`."""

    def __init__(self, config: FleetConfig, workers: int) -> None:
        if workers < 1:
            raise FleetError(f"--workers must be 1 or more (got {workers})")
        self.config = config.for_workers()
        self.workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess | None] = [None] * workers
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    def pids(self) -> list[int]:
        """The process ids of the running workers (by slot)."""
        return [p.pid for p in self._procs if p is not None and p.pid is not None]

    def _spawn(self, slot: int) -> None:
        proc = self._ctx.Process(
            target=run_worker,
            args=(self.config, slot),
            name=f"edgetally-ingest-{slot}",
            daemon=False,
        )
        proc.start()
        self._procs[slot] = proc

    def start(self) -> WorkerPool:
        # The schema (and a conversion of an older store) once, before the workers race
        # to make it.
        open_store(self.config.db).close()
        for slot in range(self.workers):
            self._spawn(slot)
        self._watcher = threading.Thread(target=self._watch, name="ingest-pool", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for slot, proc in enumerate(self._procs):
                if proc is None or proc.is_alive() or self._stopping.is_set():
                    continue
                log.warning(
                    "ingest worker %d ended (exit %s); starting it again", slot, proc.exitcode
                )
                time.sleep(RESTART_DELAY_S)
                if not self._stopping.is_set():
                    self.restarts += 1
                    self._spawn(slot)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask every worker to stop (SIGTERM: each stores what it received), then wait."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
