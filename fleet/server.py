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
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from edgetally.fleet.addresses import BrokerAddress, parse_broker_url, parse_host_port
from edgetally.fleet.api import create_app
from edgetally.fleet.api_context import FleetContext
from edgetally.fleet.errors import FleetError
from edgetally.fleet.ingest import IngestConfig, IngestCounters, Ingestor
from edgetally.fleet.queries import DEFAULT_OFFLINE_AFTER_S
from edgetally.fleet.store import Store, open_store
from fastapi import FastAPI

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything ``fleet serve`` needs, validated."""

    broker: BrokerAddress
    db: str
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    client_id: str = "edgetally-fleet"
    ca_file: str | None = None
    offline_after_s: float = DEFAULT_OFFLINE_AFTER_S
    batch_max: int = 5_000

    @staticmethod
    def of(broker: str, db: str, http: str = "127.0.0.1:8080", **kwargs: object) -> FleetConfig:
        """From the strings a user types: ``mqtt://HOST:PORT``, a path or URL, ``HOST:PORT``."""
        host, port = parse_host_port(http)
        return FleetConfig(
            broker=parse_broker_url(broker),
            db=db,
            http_host=host,
            http_port=port,
            **kwargs,  # type: ignore[arg-type]
        )


class FleetServer:
    """A running fleet manager; :meth:`start` it, :meth:`stop` it (or use ``with``)."""

    def __init__(
        self, config: FleetConfig, app_hooks: Sequence[Callable[[FastAPI], None]] = ()
    ) -> None:
        """``app_hooks`` are called with the FastAPI app before it serves (add routers)."""
        self.config = config
        self._hooks = tuple(app_hooks)
        self._store: Store | None = None
        self._ingestor: Ingestor | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._port: int | None = None
        self.app: FastAPI | None = None  # the HTTP app while running (e.g. to set its state)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise FleetError("the fleet is not running")
        return self._store

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
        self._store = open_store(c.db)
        try:
            self._ingestor = Ingestor(
                self._store,
                IngestConfig(
                    broker=c.broker, client_id=c.client_id, ca_file=c.ca_file, batch_max=c.batch_max
                ),
            )
            self._ingestor.start()
            self._start_http()
        except BaseException:
            self.stop()
            raise
        log.info("fleet: store %s, API %s", self._store.description, self.http_url)
        return self

    def _start_http(self) -> None:
        c = self.config
        ctx = FleetContext(
            store=self.store,
            counters=self.counters,
            offline_after_s=c.offline_after_s,
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

    def stop(self) -> None:
        """Stop HTTP, drain ingest into the store, close the store. Safe to call twice."""
        if self._http is not None:
            self._http.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=10)
            self._http = None
            self._http_thread = None
        if self._ingestor is not None:
            self._ingestor.stop()
            self._ingestor = None
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


def serve_in_process(broker: str, db: str, http: str = "127.0.0.1:0") -> FleetServer:
    """Start a fleet in this process and return its handle (call ``stop()`` when done)."""
    return FleetServer(FleetConfig.of(broker, db, http)).start()
