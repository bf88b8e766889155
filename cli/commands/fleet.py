"""`edgetally fleet serve` and `edgetally fleet query ...` (rollout commands attach here too)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from edgetally.commands import CommandError
from edgetally.commands.energy import (
    ACCOUNTING,
    BITRATE,
    CLOUD_REGION,
    ENERGY_CONFIG_FILE,
    HOURS_PER_DAY,
    STORE_REGION,
    token_from,
)

BROKER_PASSWORD_ENV = "EDGETALLY_BROKER_PASSWORD"

fleet_app = typer.Typer(help="The fleet manager: ingest, store, analyst API.", no_args_is_help=True)
query_app = typer.Typer(
    help="Ask the fleet's store (a file, a PostgreSQL URL, or a running fleet's API).",
    no_args_is_help=True,
)


@fleet_app.command("serve")
def serve(
    broker: str = typer.Option(
        "mqtt://127.0.0.1:1883",
        "--broker",
        metavar="URL",
        help="mqtt://[USER:PASS@]HOST:PORT or mqtts://...",
    ),
    broker_password_file: Path | None = typer.Option(
        None,
        "--broker-password-file",
        metavar="FILE",
        help="The broker password, first line of this file (the user stays in --broker); "
        f"or in {BROKER_PASSWORD_ENV}.",
    ),
    db: str = typer.Option(
        "fleet.duckdb",
        "--db",
        metavar="DB",
        help="A DuckDB file, or postgresql://USER@HOST:PORT/DB (its password from "
        "PGPASSFILE or PGPASSWORD: ps shows one in the URL).",
    ),
    http: str = typer.Option(
        "127.0.0.1:8080", "--http", metavar="HOST:PORT", help="Where the analyst API listens."
    ),
    read_url: str | None = typer.Option(
        None,
        "--read-url",
        metavar="URL",
        help="A PostgreSQL read replica of --db (postgresql://...): the API's analyst reads "
        "go there (answers trail by the replication lag); writes stay on --db.",
    ),
    client_id: str = typer.Option(
        "edgetally-fleet",
        "--client-id",
        metavar="ID",
        help="MQTT client id (ingest workers add -0, -1, ..., the api process -status and "
        "-rollouts; unique per host). A closed broker makes the user in --broker the client "
        "id (USER, USER-0, ...): there, give each host a user of its own.",
    ),
    role: str = typer.Option(
        "all",
        "--role",
        metavar="ROLE",
        help="all (one process does everything), api (API, device statuses, rollouts) or "
        "ingest (workers sharing the messages; PostgreSQL when several).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        metavar="N",
        help="Ingest worker processes on an MQTT v5 shared subscription (roles ingest, all).",
    ),
    share_group: str = typer.Option(
        "edgetally",
        "--share-group",
        metavar="NAME",
        help="The shared subscription's group ($share/NAME/edgetally/#) of ingest workers.",
    ),
    session_expiry: int = typer.Option(
        60,
        "--session-expiry",
        min=0,
        max=86_400,
        metavar="SECONDS",
        help="How long the broker holds a vanished worker's share for its return.",
    ),
    ca: Path | None = typer.Option(
        None, "--ca", metavar="FILE", help="CA certificate for mqtts://."
    ),
    offline_after: float = typer.Option(
        300.0,
        "--offline-after",
        metavar="SECONDS",
        help="Seconds of silence before a device counts as offline.",
    ),
    tokens: Path | None = typer.Option(
        None,
        "--tokens",
        metavar="FILE",
        help="Token file (fleet token add): every /api/v1 call then needs an analyst token.",
    ),
    rollouts: bool = typer.Option(
        False, "--rollouts", help="Serve bundles and run staged rollouts (needs --tokens)."
    ),
    bundles: Path = typer.Option(
        Path("fleet-rollouts"),
        "--bundles",
        metavar="DIR",
        help="Where bundles and rollout records are kept.",
    ),
    fleet_key: Path | None = typer.Option(
        None,
        "--fleet-key",
        metavar="FILE",
        help="The bundle signing key (bundle keygen's fleet.key): bundles must be signed "
        "with it, and it signs every command devices obey (--rollouts).",
    ),
    fleet_pubkey: Path | None = typer.Option(
        None,
        "--fleet-pubkey",
        metavar="FILE",
        help="Optional: the public key devices pin; must be --fleet-key's public half.",
    ),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        metavar="URL",
        help="The API's URL as devices reach it (bundle downloads).",
    ),
    max_bundle_mb: int = typer.Option(
        1024,
        "--max-bundle-mb",
        min=1,
        metavar="MIB",
        help="The largest bundle upload taken, in MiB (--rollouts).",
    ),
    query_timeout: float = typer.Option(
        30.0,
        "--query-timeout",
        min=0.0,
        metavar="SECONDS",
        help="Seconds an API query may read before it is cancelled (504); 0: no limit.",
    ),
    max_heavy_queries: int = typer.Option(
        3,
        "--max-heavy-queries",
        min=1,
        metavar="N",
        help="Queries returning rows (series, exports) answered at once; a few more wait, "
        "the rest get 503 with Retry-After.",
    ),
    dead_letter_days: float = typer.Option(
        30.0,
        "--dead-letter-days",
        min=0.0,
        metavar="DAYS",
        help="Dead letters older than this are deleted (at start, then hourly); 0 keeps all.",
    ),
    raw_months: int = typer.Option(
        0,
        "--raw-retention-months",
        min=0,
        max=1200,
        metavar="MONTHS",
        help="Raw rows kept this many whole months (PostgreSQL drops monthly partitions); "
        "hourly and daily rollups stay. 0 keeps all.",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Serve a non-loopback --http address without --tokens (anyone may read).",
    ),
    earliest: datetime = typer.Option(
        "2000-01-01",
        "--earliest",
        metavar="DATE",
        help="Messages with an earlier time are dead letters (a device with a broken clock).",
    ),
    max_ahead: float = typer.Option(
        86_400.0,
        "--max-ahead",
        min=0.0,
        metavar="SECONDS",
        help="Messages more than this ahead of the fleet's clock are dead letters.",
    ),
    energy_config: Path | None = ENERGY_CONFIG_FILE,
    hours_per_day: float | None = HOURS_PER_DAY,
    bitrate_mbps: float | None = BITRATE,
    store_region: str | None = STORE_REGION,
    cloud_region: str | None = CLOUD_REGION,
    accounting: str | None = ACCOUNTING,
) -> None:
    """Subscribe to the broker, store every valid message, serve the analyst API; with
    --tokens the API needs bearer tokens, with --rollouts it also runs staged rollouts."""
    from edgetally.fleet.config import ROLES, FleetConfig
    from edgetally.fleet.errors import FleetError
    from edgetally.fleet.server import FleetServer
    from edgetally.models.topics import check_id
    from edgetally.models.wire import TimeWindow

    if role not in ROLES:
        raise CommandError(f"unknown --role {role!r}: use ingest, api or all")
    if role == "api" and workers != 1:
        raise CommandError("--role api runs no ingest workers: drop --workers")
    if rollouts and role == "ingest":
        raise CommandError("--rollouts runs in the api (or all) role, not in ingest workers")
    check_id(share_group, "--share-group")
    if rollouts and (tokens is None or fleet_key is None):
        raise CommandError(
            "--rollouts needs --tokens FILE and --fleet-key KEY (the bundle signing key: it "
            "signs every command devices obey)"
        )
    config = FleetConfig.of(
        broker,
        db,
        http,
        broker_password_file=broker_password_file,
        client_id=client_id,
        ca_file=str(ca) if ca else None,
        offline_after_s=offline_after,
        tokens_file=str(tokens) if tokens else None,
        rollouts_dir=str(bundles) if rollouts else None,
        fleet_key=str(fleet_key) if fleet_key else None,
        fleet_pubkey=str(fleet_pubkey) if fleet_pubkey else None,
        public_url=public_url,
        max_bundle_bytes=max_bundle_mb << 20,
        query_timeout_s=query_timeout or None,
        max_heavy_queries=max_heavy_queries,
        dead_letter_days=dead_letter_days or None,
        raw_months=raw_months or None,
        insecure=insecure,
        role=role,
        workers=workers,
        share_group=share_group,
        session_expiry_s=session_expiry,
        read_url=read_url,
        window=TimeWindow(
            earliest=earliest if earliest.tzinfo else earliest.replace(tzinfo=UTC),
            max_ahead_s=max_ahead,
        ),
    )
    config = _broker_password_from_env(config, broker_password_file)
    _warn_secrets_in_argv(broker, db, read_url)
    try:
        config.check_scale_out()
    except FleetError as exc:
        raise CommandError(str(exc)) from None
    if role == "ingest":
        _serve_ingest(config)
        return
    config.check_exposure()
    from edgetally.commands.energy import config_from
    from edgetally.fleet.http.energy import energy_config_hook

    energy = config_from(
        energy_config, hours_per_day, bitrate_mbps, store_region, cloud_region, accounting
    )
    if insecure and tokens is None:
        typer.echo(
            f"edgetally: warning: --insecure: the API on {http} needs no token; whoever "
            "reaches it reads the fleet",
            err=True,
        )
    done = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    with FleetServer(config, app_hooks=[energy_config_hook(energy)]) as fleet:
        access = "tokens required" if tokens else "open, no tokens"
        extra = f", rollouts in {bundles}" if rollouts else ""
        if read_url is not None:
            extra += f", analyst reads from {fleet.read_store.description}"
        typer.echo(
            f"fleet: broker {config.broker}, store {fleet.store.description}, "
            f"API {fleet.http_url}/docs ({access}{extra}) (Ctrl-C stops)",
            err=True,
        )
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        c = fleet.counters()
    typer.echo(
        f"fleet: stopped; {c.aggregates_new} aggregates stored, {c.aggregates_duplicate} "
        f"duplicates skipped, {c.dead_letters} dead letters",
        err=True,
    )


def _broker_password_from_env(config: Any, password_file: Path | None) -> Any:
    """``config`` logging in with EDGETALLY_BROKER_PASSWORD when neither the URL nor
    ``--broker-password-file`` gives the password (the user must be in ``--broker``)."""
    import dataclasses
    import os

    password = os.environ.get(BROKER_PASSWORD_ENV, "").strip()
    if not password or password_file is not None or config.broker.password is not None:
        return config
    if config.broker.username is None:
        raise CommandError(
            f"{BROKER_PASSWORD_ENV} is set: give the broker user in --broker "
            "(mqtts://USER@HOST:PORT), or unset it"
        )
    return dataclasses.replace(config, broker=config.broker.with_password(password))


def _warn_secrets_in_argv(broker: str, db: str, read_url: str | None) -> None:
    """One warning per option whose URL holds a password: ``ps`` shows it to every user of
    the machine, and there is a way to keep it out."""
    from edgetally.models.redact import url_secrets

    pg = "PGPASSFILE (a ~/.pgpass file) or PGPASSWORD"
    ways = {
        "--broker": f"--broker-password-file FILE or {BROKER_PASSWORD_ENV}",
        "--db": pg,
        "--read-url": pg,
    }
    for flag, url in (("--broker", broker), ("--db", db), ("--read-url", read_url)):
        if url and url_secrets(url):
            typer.echo(
                f"edgetally: warning: the {flag} URL holds a password, which ps shows to every "
                f"user of this machine: give it with {ways[flag]} instead",
                err=True,
            )


def _serve_ingest(config: Any) -> None:
    """``--role ingest``: one worker in this process, or a pool of worker processes."""
    from edgetally.fleet.workers import IngestWorker, WorkerPool

    done = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    group = config.for_workers()
    what = f"{config.workers} ingest workers" if config.workers > 1 else "an ingest worker"
    typer.echo(
        f"fleet: {what} on $share/{group.share_group}/edgetally/# at {config.broker}, "
        f"store {_redacted(config.db)}, session expiry {group.session_expiry_s} s (Ctrl-C stops)",
        err=True,
    )
    if config.workers > 1:
        with WorkerPool(config, config.workers):
            _wait(done)
        typer.echo("fleet: ingest workers stopped", err=True)
        return
    with IngestWorker(config, 0) as worker:
        _wait(done)
        c = worker.counters()
    typer.echo(
        f"fleet: stopped; {c.aggregates_new} aggregates stored, {c.aggregates_duplicate} "
        f"duplicates skipped, {c.dead_letters} dead letters",
        err=True,
    )


def _wait(done: threading.Event) -> None:
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _redacted(db: str) -> str:
    from edgetally.models.broker_url import redact_url

    return redact_url(db)


def _when(text: str | None, what: str) -> datetime | None:
    from edgetally.fleet.http.context import utc_in_window

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{what}: {text[:60]!r} is not an ISO 8601 date or time") from None
    try:
        return utc_in_window(value)
    except ValueError as exc:
        raise CommandError(f"{what}: {text[:60]!r}: {exc}") from None


def _print_table(records: list[dict[str, Any]]) -> None:
    if not records:
        typer.echo("(no rows)")
        return
    cols = list(records[0])
    cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _run_query(
    name: str,
    *,
    db: str | None,
    api: str | None,
    params: dict[str, str],
    fmt: str,
    output: Path | None,
    as_json: bool,
    token: str | None = None,
) -> None:
    from edgetally.fleet.http.export import to_csv, to_parquet, to_records

    if (db is None) == (api is None):
        raise CommandError("give exactly one of --db (a file or postgresql:// URL) or --api URL")
    if fmt != "table" and fmt not in ("csv", "parquet"):
        raise CommandError(f"unknown --format {fmt!r}: use table, csv or parquet")
    if fmt == "parquet" and output is None:
        raise CommandError("--format parquet needs --output FILE")
    body: bytes | None = None
    if api is not None:
        records, body = _from_api(api, name, params, fmt, token)
    else:
        table = _from_db(db or "", name, params)
        records = to_records(table)
        if fmt in ("csv", "parquet"):
            table = _json_cells(table)  # audio's events (name -> count), as the API writes them
            body = to_csv(table) if fmt == "csv" else to_parquet(table)
    if body is not None:
        if output is None:
            typer.echo(body.decode(), nl=False)
        else:
            output.write_bytes(body)
            typer.echo(f"wrote {output}", err=True)
        return
    if as_json:
        typer.echo(json.dumps({"rows": records}, indent=None))
    else:
        _print_table(records)


def _json_cells(table: Any) -> Any:
    from edgetally.fleet.store.records import Table

    if not any(isinstance(v, dict) for row in table.rows for v in row):
        return table
    return Table(
        table.columns,
        [
            tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in row)
            for row in table.rows
        ],
    )


def _from_db(db: str, name: str, params: dict[str, str]) -> Any:
    from edgetally.fleet.store import queries, sensors
    from edgetally.fleet.store.connect import open_store
    from edgetally.fleet.store.records import Filters

    # Read-only: a query makes or migrates nothing, so a PostgreSQL read replica serves too.
    store = open_store(db, read_only=True)
    try:
        if name == "devices":
            return queries.devices(store, site=params.get("site"))
        if name == "dead-letters":
            return queries.dead_letters(store, limit=int(params.get("limit", "100")))
        f = Filters(
            site=params.get("site"),
            device=params.get("device"),
            line=params.get("line"),
            start=_when(params.get("from"), "--from"),
            end=_when(params.get("to"), "--to"),
            interval=params.get("interval", "hour"),  # type: ignore[arg-type]  # the store refuses an unknown one
        )
        if name == "events":
            return queries.events(store, f)
        if name == "shelf":
            return sensors.shelf(store, f, region=params.get("region"), facing=params.get("facing"))
        if name == "audio":
            return sensors.audio(store, f, source=params.get("source"))
        group = params.get("group", "device")
        return queries.run_named(store, name, f, group=group)  # type: ignore[arg-type]  # run_named refuses an unknown group
    finally:
        store.close()


def _from_api(
    api: str, name: str, params: dict[str, str], fmt: str, token: str | None = None
) -> tuple[list[dict[str, Any]], bytes | None]:
    from edgetally.commands.energy import api_get

    query = dict(params)
    if fmt in ("csv", "parquet"):
        query["format"] = fmt
    resp = api_get(api, f"/api/v1/{name}", query, token)
    if fmt in ("csv", "parquet"):
        return [], resp.content
    rows: list[dict[str, Any]] = resp.json()["rows"]
    return rows, None


def _filter_params(
    site: str | None,
    device: str | None,
    line: str | None,
    start: str | None,
    end: str | None,
    interval: str,
    group: str = "device",
) -> dict[str, str]:
    from edgetally.fleet.store.queries import GROUPS
    from edgetally.fleet.store.records import INTERVALS
    from edgetally.models.topics import check_id

    params: dict[str, str] = {"interval": interval}
    if interval not in INTERVALS:
        raise CommandError(f"unknown --interval {interval!r}: use {', '.join(INTERVALS)}")
    if group not in GROUPS:
        raise CommandError(f"unknown --group {group!r}: use {', '.join(GROUPS)}")
    if group != "device":
        params["group"] = group
    for key, value in (("site", site), ("device", device), ("line", line)):
        if value is not None:
            params[key] = check_id(value, key)
    for key, text, flag in (("from", start, "--from"), ("to", end, "--to")):
        when = _when(text, flag)
        if when is not None:
            params[key] = when.isoformat()
    return params


_DB = typer.Option(
    None, "--db", metavar="DB", help="A DuckDB file (not one a fleet is serving) or a PG URL."
)
_API = typer.Option(
    None, "--api", metavar="URL", help="A running fleet, e.g. http://127.0.0.1:8080."
)
_SITE = typer.Option(None, "--site", metavar="SITE", help="Only this site.")
_DEVICE = typer.Option(None, "--device", metavar="DEVICE", help="Only this device.")
_LINE = typer.Option(
    None, "--line", metavar="ID", help="Line (traffic) or zone (occupancy, dwell) id."
)
_FROM = typer.Option(
    None, "--from", metavar="TIME", help="ISO 8601, inclusive (UTC without an offset)."
)
_TO = typer.Option(None, "--to", metavar="TIME", help="ISO 8601, exclusive.")
_INTERVAL = typer.Option(
    "hour", "--interval", metavar="INTERVAL", help="minute, 15min, hour or day."
)
_GROUP = typer.Option(
    "device",
    "--group",
    metavar="GROUP",
    help='device (one row per device and line), site or fleet (summed; the others read "*").',
)
_TOKEN = typer.Option(
    None,
    "--token",
    envvar="EDGETALLY_TOKEN",
    metavar="TOKEN",
    help="Bearer token for --api (analyst or more); EDGETALLY_TOKEN or --token-file keeps "
    "it out of ps.",
)
_TOKEN_FILE = typer.Option(
    None,
    "--token-file",
    metavar="FILE",
    help="A file whose first line is the bearer token for --api (instead of --token).",
)
_JSON = typer.Option(False, "--json", help="The API's JSON: {'rows': [...]}.")
_FORMAT = typer.Option("table", "--format", metavar="FORMAT", help="table, csv or parquet.")
_OUTPUT = typer.Option(None, "--output", "-o", metavar="FILE", help="Write csv/parquet here.")


def _analytic(name: str, doc: str) -> None:
    def command(
        db: str | None = _DB,
        api: str | None = _API,
        site: str | None = _SITE,
        device: str | None = _DEVICE,
        line: str | None = _LINE,
        start: str | None = _FROM,
        end: str | None = _TO,
        interval: str = _INTERVAL,
        group: str = _GROUP,
        as_json: bool = _JSON,
        fmt: str = _FORMAT,
        output: Path | None = _OUTPUT,
        token: str | None = _TOKEN,
        token_file: Path | None = _TOKEN_FILE,
    ) -> None:
        params = _filter_params(site, device, line, start, end, interval, group)
        _run_query(
            name,
            db=db,
            api=api,
            params=params,
            fmt=fmt,
            output=output,
            as_json=as_json,
            token=token_from(token, token_file),
        )

    command.__doc__ = doc
    query_app.command(name)(command)


_analytic("traffic", "People in and out per bucket, site, device and line.")
_analytic("occupancy", "Zone occupancy per bucket: time-weighted mean and peak.")
_analytic("dwell", "Visits that ended per bucket, with median and p90 dwell in seconds.")


@query_app.command("devices")
def query_devices(
    db: str | None = _DB,
    api: str | None = _API,
    site: str | None = _SITE,
    as_json: bool = _JSON,
    fmt: str = _FORMAT,
    output: Path | None = _OUTPUT,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Known devices: last seen, online, model, backend, fps, errors."""
    from edgetally.models.topics import check_id

    params = {"site": check_id(site, "site")} if site is not None else {}
    _run_query(
        "devices",
        db=db,
        api=api,
        params=params,
        fmt=fmt,
        output=output,
        as_json=as_json,
        token=token_from(token, token_file),
    )


@query_app.command("dead-letters")
def query_dead_letters(
    db: str | None = _DB,
    api: str | None = _API,
    limit: int = typer.Option(
        100, "--limit", min=1, max=10_000, metavar="N", help="At most this many."
    ),
    as_json: bool = _JSON,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """The latest messages that did not validate, and why."""
    params = {"limit": str(limit)}
    _run_query(
        "dead-letters",
        db=db,
        api=api,
        params=params,
        fmt="table",
        output=None,
        as_json=as_json,
        token=token_from(token, token_file),
    )


@query_app.command("events")
def query_events(
    db: str | None = _DB,
    api: str | None = _API,
    site: str | None = _SITE,
    device: str | None = _DEVICE,
    line: str | None = typer.Option(
        None, "--line", metavar="ID", help="The line or zone the events were counted on."
    ),
    start: str | None = _FROM,
    end: str | None = _TO,
    interval: str = _INTERVAL,
    as_json: bool = _JSON,
    fmt: str = _FORMAT,
    output: Path | None = _OUTPUT,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Shelf and audio event counts per bucket, site, device and kind."""
    params = _filter_params(site, device, line, start, end, interval)
    _run_query(
        "events",
        db=db,
        api=api,
        params=params,
        fmt=fmt,
        output=output,
        as_json=as_json,
        token=token_from(token, token_file),
    )


def _with_ids(params: dict[str, str], **ids: str | None) -> dict[str, str]:
    from edgetally.models.topics import check_id

    for key, value in ids.items():
        if value is not None:
            params[key] = check_id(value, key)
    return params


@query_app.command("shelf")
def query_shelf(
    db: str | None = _DB,
    api: str | None = _API,
    site: str | None = _SITE,
    device: str | None = _DEVICE,
    region: str | None = typer.Option(None, "--region", metavar="ID", help="Only this region."),
    facing: str | None = typer.Option(None, "--facing", metavar="ID", help="Only this facing."),
    start: str | None = _FROM,
    end: str | None = _TO,
    interval: str = _INTERVAL,
    as_json: bool = _JSON,
    fmt: str = _FORMAT,
    output: Path | None = _OUTPUT,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Shelf events per bucket and facing, and whether it was empty at the bucket's end."""
    params = _with_ids(
        _filter_params(site, device, None, start, end, interval), region=region, facing=facing
    )
    _run_query(
        "shelf",
        db=db,
        api=api,
        params=params,
        fmt=fmt,
        output=output,
        as_json=as_json,
        token=token_from(token, token_file),
    )


@query_app.command("audio")
def query_audio(
    db: str | None = _DB,
    api: str | None = _API,
    site: str | None = _SITE,
    device: str | None = _DEVICE,
    source: str | None = typer.Option(
        None, "--source", metavar="ID", help="Only this microphone or sound file."
    ),
    start: str | None = _FROM,
    end: str | None = _TO,
    interval: str = _INTERVAL,
    as_json: bool = _JSON,
    fmt: str = _FORMAT,
    output: Path | None = _OUTPUT,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Sound level (Leq, LAeq), speech share and sound events per bucket and source."""
    params = _with_ids(_filter_params(site, device, None, start, end, interval), source=source)
    _run_query(
        "audio",
        db=db,
        api=api,
        params=params,
        fmt=fmt,
        output=output,
        as_json=as_json,
        token=token_from(token, token_file),
    )


@query_app.command("energy")
def query_energy(
    db: str | None = _DB,
    api: str | None = _API,
    site: str | None = _SITE,
    device: str | None = _DEVICE,
    start: str | None = _FROM,
    end: str | None = _TO,
    energy_config: Path | None = ENERGY_CONFIG_FILE,
    hours_per_day: float | None = HOURS_PER_DAY,
    bitrate_mbps: float | None = BITRATE,
    store_region: str | None = STORE_REGION,
    cloud_region: str | None = CLOUD_REGION,
    accounting: str | None = ACCOUNTING,
    as_json: bool = typer.Option(False, "--json", help="The API's JSON: the whole ledger."),
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """The energy ledger per site and device (as edgetally energy report): edge Wh and
    gCO2e beside the cloud baseline of the camera hours they counted."""
    from edgetally.commands.energy import show_ledger
    from edgetally.models.topics import check_id

    for key, value in (("site", site), ("device", device)):
        if value is not None:
            check_id(value, key)
    show_ledger(
        db=db,
        api=api,
        site=site,
        device=device,
        start=start,
        end=end,
        config_file=energy_config,
        flags=(hours_per_day, bitrate_mbps, store_region, cloud_region, accounting),
        token=token_from(token, token_file),
        as_json=as_json,
        empty="(no power readings match)",
    )


fleet_app.add_typer(query_app, name="query")


def register(app: typer.Typer) -> None:
    if importlib.util.find_spec("edgetally.commands.rollout") is not None:
        rollout = importlib.import_module("edgetally.commands.rollout")
        attach = getattr(rollout, "attach", None)
        if callable(attach):
            attach(fleet_app)
    app.add_typer(fleet_app, name="fleet")
