"""The fleet manager in one handle: ingest from MQTT into a store, and the HTTP API.

``edgetally fleet serve`` runs it in the foreground; the demo embeds it::

    with FleetServer(FleetConfig.of("mqtt://127.0.0.1:1883", "fleet.duckdb", "127.0.0.1:0")) as f:
        print(f.http_url)   # the API, e.g. http://127.0.0.1:41234/docs
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from edgetally.fleet.addresses import (
    is_loopback,
)
from edgetally.fleet.broker_config import ROLLOUTS_ROLE, STATUS_ROLE, service_login
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.auth import Authenticator, WatchedTokens, guard_prefix, install_auth
from edgetally.fleet.http.context import (
    DEFAULT_QUERY_TIMEOUT_S,
    FleetContext,
    HeavyQueries,
)
from edgetally.fleet.http.rollout import (
    build_rollout_read_router,
    build_rollout_router,
)
from edgetally.fleet.ingest.mqtt import IngestCounters, Ingestor
from edgetally.fleet.rollout.mqtt import RolloutMqttLink
from edgetally.fleet.rollout.records import FileRecords, StoreRecords
from edgetally.fleet.rollout.service import RolloutService, load_signing_key
from edgetally.fleet.store.base import Store, StoreError
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.retention import drop_old_raw
from edgetally.fleet.workers import WorkerPool
from edgetally.models.errors import EdgetallyError
from fastapi import FastAPI

API_PREFIX = "/api/v1"

log = logging.getLogger(__name__)


class FleetServer:
    """A running fleet manager; :meth:`start` it, :meth:`stop` it (or use ``with``)."""

    def __init__(
        self, config: FleetConfig, app_hooks: Sequence[Callable[[FastAPI], None]] = ()
    ) -> None:
        """``app_hooks`` are called with the FastAPI app before it serves (add routers)."""
        self.config = config
        self._hooks = tuple(app_hooks)
        self._store: Store | None = None
        self._read_store: Store | None = None  # the read replica's, with --read-url
        self._ingestor: Ingestor | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._port: int | None = None
        self._rollout_link: RolloutMqttLink | None = None
        self._ticker: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pool: Any = None  # the ingest WorkerPool of role "all" with several workers
        self.rollouts: RolloutService | None = None
        self.app: FastAPI | None = None  # the HTTP app while running (e.g. to set its state)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise FleetError("the fleet is not running")
        return self._store

    @property
    def read_store(self) -> Store:
        """Where the API's analyst reads go: the read replica's store, or :attr:`store`."""
        return self._read_store or self.store

    @property
    def http_url(self) -> str:
        if self._port is None:
            raise FleetError("the fleet is not running")
        host = self.config.http_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self._port}"

    def counters(self) -> IngestCounters:
        if self._ingestor is None:
            return IngestCounters()
        return self._ingestor.counters()

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            raise FleetError("the fleet is not running")
        return self._ingestor

    def start(self) -> FleetServer:
        c = self.config
        c.check_exposure()
        c.check_scale_out()
        if c.role == "ingest":
            raise FleetError("the ingest role serves no API: run it with fleet.workers")
        if c.insecure and not c.tokens_file and not is_loopback(c.http_host):
            log.warning(
                "the API on %s:%d is open to every machine that reaches it (--insecure, "
                "no --tokens)",
                c.http_host,
                c.http_port,
            )
        hooks = list(self._hooks)
        tokens = WatchedTokens(Path(c.tokens_file)) if c.tokens_file else None
        if c.rollouts_dir and (tokens is None or not c.fleet_key):
            raise FleetError(
                "rollouts need --tokens (operators) and --fleet-key (the bundle signing key, "
                "which signs every command devices obey)"
            )
        if tokens is not None:
            hooks.append(_auth_hook(tokens))
        self._store = open_store(c.db)
        self._stopping.clear()
        try:
            if c.read_url is not None:
                from edgetally.fleet.store.replica import open_replica

                self._read_store = open_replica(c.read_url, self._store)
            self._start_housekeeping()
            # "all" with one worker: everything here. Otherwise this process takes only the
            # device statuses, unshared (the broker's order keeps the last will right),
            # and the workers the rest.
            statuses_only = c.role == "api" or c.scaled_out
            self._ingestor = Ingestor(
                self._store,
                c.ingest_config(STATUS_ROLE if statuses_only else None, status_only=statuses_only),
            )
            self._ingestor.start()
            if c.scaled_out:
                self._pool = WorkerPool(c.for_workers(), c.workers).start()
            if c.rollouts_dir:
                hooks.append(self._start_rollouts())
            elif tokens is not None:  # another process runs them: read them from the store
                router = build_rollout_read_router(StoreRecords(self._store))
                hooks.append(lambda app: app.include_router(router))
            self._hooks = tuple(hooks)
            self._start_http()
            if self.rollouts is not None:
                self._start_ticker(self.rollouts)
        except BaseException:
            self.stop()
            raise
        log.info(
            "fleet: store %s%s, API %s",
            self._store.description,
            f", reads from {self._read_store.description}" if self._read_store else "",
            self.http_url,
        )
        return self

    def _start_http(self) -> None:
        c = self.config
        ctx = FleetContext(
            store=self.read_store,
            primary=self.store if self._read_store is not None else None,
            counters=self.counters,
            offline_after_s=c.offline_after_s,
            query_timeout_s=c.query_timeout_s,
            heavy=HeavyQueries(
                c.max_heavy_queries, wait_s=c.query_timeout_s or DEFAULT_QUERY_TIMEOUT_S
            ),
        )
        self.app = create_app(ctx, self._hooks)
        config = uvicorn.Config(
            self.app,
            host=c.http_host,
            port=c.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self._http = server
        thread = threading.Thread(target=server.run, name="fleet-http", daemon=True)
        thread.start()
        self._http_thread = thread
        deadline = time.monotonic() + 15.0
        while not server.started:
            if not thread.is_alive():
                raise FleetError(f"cannot serve HTTP on {c.http_host}:{c.http_port} (in use?)")
            if time.monotonic() > deadline:
                raise FleetError(f"the HTTP server on {c.http_host}:{c.http_port} did not start")
            time.sleep(0.02)
        sockets = [s for srv in server.servers for s in srv.sockets]
        self._port = int(sockets[0].getsockname()[1]) if sockets else c.http_port

    def _start_rollouts(self) -> Callable[[FastAPI], None]:
        """The rollout service (its devices: the store's), its MQTT link, and the hook
        that mounts its router."""
        c = self.config
        assert c.rollouts_dir is not None and c.fleet_key is not None
        signing_key = load_signing_key(
            Path(c.fleet_key), Path(c.fleet_pubkey) if c.fleet_pubkey else None
        )
        records = StoreRecords(self.store)
        records.claim()  # exactly one process runs rollouts
        imported = records.import_files(FileRecords(Path(c.rollouts_dir) / "rollouts"))
        if imported:
            log.info("%d rollout records moved from %s into the store", imported, c.rollouts_dir)
        b, client_id = service_login(c.broker, c.client_id, ROLLOUTS_ROLE)
        link = RolloutMqttLink(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            ca_cert=Path(c.ca_file) if c.ca_file else None,
            client_id=client_id,
        )
        link.start(timeout=15.0)
        self._rollout_link = link
        service = RolloutService(
            Path(c.rollouts_dir),
            signing_key,
            publish=link.publish,
            devices=self._device_ids,
            bundle_url=self._bundle_url,
            records=records,
        )
        link.attach(service)
        self.rollouts = service
        router = build_rollout_router(
            service, upload_dir=Path(c.rollouts_dir), max_bundle_bytes=c.max_bundle_bytes
        )
        return lambda app: app.include_router(router)

    def _device_ids(self) -> list[str]:
        """Every device the fleet knows, as ``site/device`` (what rollouts select from)."""
        table = self.store.fetch("SELECT site, device FROM devices ORDER BY site, device")
        return [f"{site}/{device}" for site, device in table.rows]

    def _bundle_url(self, sha256: str) -> str:
        base = (self.config.public_url or self.http_url).rstrip("/")
        return f"{base}/bundles/{sha256}"

    def _start_ticker(self, service: RolloutService) -> None:
        """Tick the rollouts (time out silent devices, advance stages) every few seconds."""

        def run() -> None:
            while not self._stopping.wait(self.config.rollout_tick_s):
                try:
                    service.tick()
                except EdgetallyError as exc:
                    log.warning("rollout tick: %s", exc)

        self._ticker = threading.Thread(target=run, name="rollout-tick", daemon=True)
        self._ticker.start()

    def _start_housekeeping(self) -> None:
        """Delete dead letters older than ``dead_letter_days`` and raw months past
        ``raw_months`` now (a store that was down for a while may hold many), then every
        ``housekeeping_s``."""
        days, months = self.config.dead_letter_days, self.config.raw_months
        if days is None and months is None:
            return
        store = self.store

        def tidy() -> None:
            if days is not None:
                try:
                    delete_old_dead_letters(store, days)
                except StoreError as exc:
                    log.warning("deleting old dead letters: %s", exc)
            if months is not None:
                try:
                    gone = drop_old_raw(store, months, datetime.now(UTC))
                except StoreError as exc:
                    log.warning("dropping old raw months: %s", exc)
                else:
                    if gone:
                        log.info("raw rows past %d months dropped: %s", months, ", ".join(gone))

        tidy()

        def run() -> None:
            while not self._stopping.wait(self.config.housekeeping_s):
                tidy()

        self._housekeeper = threading.Thread(target=run, name="fleet-housekeeping", daemon=True)
        self._housekeeper.start()

    def stop(self) -> None:
        """Stop HTTP, drain ingest into the store, close the store. Safe to call twice."""
        self._stopping.set()
        for thread in (self._ticker, self._housekeeper):
            if thread is not None:
                thread.join(timeout=30)
        self._ticker = self._housekeeper = None
        if self._rollout_link is not None:
            self._rollout_link.stop()
            self._rollout_link = None
        self.rollouts = None
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
            self._http = None
            self._http_thread = None
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._ingestor is not None:
            self._ingestor.stop()
            self._ingestor = None
        if self._read_store is not None:
            self._read_store.close()
            self._read_store = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._port = None

    def __enter__(self) -> FleetServer:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


def delete_old_dead_letters(store: Store, days: float, now: datetime | None = None) -> None:
    """Delete the dead letters received more than ``days`` days before ``now``."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    store.execute("DELETE FROM dead_letters WHERE received_at < ?", [cutoff.replace(tzinfo=None)])


def _auth_hook(tokens: Authenticator) -> Callable[[FastAPI], None]:
    def hook(app: FastAPI) -> None:
        install_auth(app, tokens)
        guard_prefix(app, API_PREFIX, "analyst")

    return hook
