"""What ``fleet serve`` runs with: :class:`FleetConfig`, validated, and its roles.

Its own module so that the fleet server and the ingest workers it starts both read it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from edgetally.fleet.addresses import (
    BrokerAddress,
    is_loopback,
    parse_broker_url,
    parse_host_port,
    read_password_file,
)
from edgetally.fleet.broker_config import service_login
from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.context import DEFAULT_MAX_HEAVY_QUERIES, DEFAULT_QUERY_TIMEOUT_S
from edgetally.fleet.http.rollout import DEFAULT_MAX_BUNDLE_BYTES
from edgetally.fleet.ingest.mqtt import IngestConfig
from edgetally.fleet.store.queries import DEFAULT_OFFLINE_AFTER_S
from edgetally.models.broker_url import redact_url
from edgetally.models.wire import DEFAULT_WINDOW, TimeWindow

Role = Literal["ingest", "api", "all"]
ROLES: tuple[str, ...] = get_args(Role)
DEFAULT_SHARE_GROUP = "edgetally"
DEFAULT_SESSION_EXPIRY_S = 60
DEFAULT_DEAD_LETTER_DAYS = 30.0


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
    tokens_file: str | None = None  # hashed bearer tokens: /api/v1 then needs analyst or more
    rollouts_dir: str | None = None  # rollouts on: bundles and rollout records live here
    # Rollouts: the bundle signing key (bundles verify with its public half, every command
    # is signed with it); fleet_pubkey, when given too, must be that public half.
    fleet_key: str | None = None
    fleet_pubkey: str | None = None
    public_url: str | None = None  # how devices reach the API (bundle downloads)
    rollout_tick_s: float = 5.0
    query_timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S  # reads cancelled after it
    max_heavy_queries: int = DEFAULT_MAX_HEAVY_QUERIES  # queries returning rows at once
    dead_letter_days: float | None = DEFAULT_DEAD_LETTER_DAYS  # None: kept for ever
    housekeeping_s: float = 3600.0  # how often old dead letters (and raw months) go
    raw_months: int | None = None  # raw rows kept this many whole months (None: all)
    insecure: bool = False  # serve a non-loopback address without tokens anyway
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES  # the largest bundle upload taken
    window: TimeWindow | None = DEFAULT_WINDOW  # times a message may carry (None: any)
    # Scale-out: "all" with one worker is one process doing everything; "api" serves the
    # API, device statuses and rollouts; "ingest" workers share the messages (PostgreSQL).
    role: Role = "all"
    workers: int = 1  # ingest worker processes ("all" with more than one, or "ingest")
    share_group: str | None = None  # the shared subscription's group (ingest workers)
    session_expiry_s: int | None = None  # a worker's broker session after it vanished
    mqtt_v5: bool = True  # False for a broker that speaks only MQTT 3.1.1 (one process)
    # A PostgreSQL read replica of db: the API's analyst reads go there (api and all roles).
    read_url: str | None = None

    @property
    def scaled_out(self) -> bool:
        """Whether ingest runs in shared-subscription workers (not in this process alone)."""
        return self.role == "ingest" or (self.role == "all" and self.workers > 1)

    def check_scale_out(self) -> None:
        """Several ingest processes need a store several processes can write (PostgreSQL)."""
        if self.role not in ROLES:
            raise FleetError(f"unknown role {self.role!r}: use ingest, api or all")
        if self.workers < 1:
            raise FleetError(f"--workers must be 1 or more (got {self.workers})")
        from edgetally.fleet.store.base import is_postgres_url

        if self.workers > 1 and not is_postgres_url(self.db):
            raise FleetError(
                f"--workers {self.workers}: DuckDB allows one process; give a "
                "postgresql:// store to run several ingest workers"
            )
        if self.read_url is not None:
            from edgetally.fleet.store.replica import check_read_url

            if self.role == "ingest":
                raise FleetError(
                    "--read-url serves the API's reads: give it to the api (or all) role, "
                    "not to ingest workers"
                )
            check_read_url(self.read_url, primary_postgres=is_postgres_url(self.db))

    def ingest_config(
        self, role: str | int | None = None, *, shared: bool = False, status_only: bool = False
    ) -> IngestConfig:
        """How one ingest client of this fleet connects: the fleet process's own (unshared,
        its session never expires) or, ``shared``, a worker's (the share group, the session
        expiry); its login and client id are ``role``'s (:func:`service_login`)."""
        broker, client_id = service_login(self.broker, self.client_id, role)
        return IngestConfig(
            broker=broker,
            client_id=client_id,
            ca_file=self.ca_file,
            batch_max=self.batch_max,
            window=self.window,
            status_only=status_only,
            mqtt_v5=self.mqtt_v5,
            share_group=self.share_group if shared else None,
            session_expiry_s=self.session_expiry_s if shared else None,
        )

    def for_workers(self) -> FleetConfig:
        """This config as ingest workers take it: a share group and a session expiry."""
        from dataclasses import replace

        return replace(
            self,
            share_group=self.share_group or DEFAULT_SHARE_GROUP,
            session_expiry_s=(
                DEFAULT_SESSION_EXPIRY_S if self.session_expiry_s is None else self.session_expiry_s
            ),
        )

    @staticmethod
    def of(
        broker: str,
        db: str,
        http: str = "127.0.0.1:8080",
        *,
        broker_password_file: str | Path | None = None,
        **kwargs: object,
    ) -> FleetConfig:
        """From the strings a user types: ``mqtt://HOST:PORT``, a path or URL, ``HOST:PORT``;
        the broker's password from a file when given."""
        host, port = parse_host_port(http)
        address = parse_broker_url(broker)
        if broker_password_file is not None:
            address = address.with_password(read_password_file(Path(broker_password_file)))
        return FleetConfig(
            broker=address,
            db=db,
            http_host=host,
            http_port=port,
            **kwargs,  # type: ignore[arg-type]  # FleetConfig's other fields
        )

    def __repr__(self) -> str:  # every URL's password stays out (the broker's too)
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("db", "read_url", "public_url"):
            if shown[key] is not None:
                shown[key] = redact_url(shown[key])
        return f"FleetConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def check_exposure(self) -> None:
        """An API any machine can reach needs tokens, unless ``insecure`` says otherwise."""
        if self.tokens_file or self.insecure or is_loopback(self.http_host):
            return
        raise FleetError(
            f"the API on {self.http_host}:{self.http_port} would be open to every machine that "
            "reaches it: give --tokens FILE (edgetally fleet token add), serve on 127.0.0.1, "
            "or pass --insecure to serve it open anyway"
        )
