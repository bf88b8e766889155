"""`edgetally energy baseline|report|regions`: the edge-vs-cloud energy ledger.

The energy config's options (:data:`ENERGY_CONFIG` and the flags after it) and
:func:`config_from` are shared with ``fleet serve``, ``fleet query energy`` and the demo, and
:func:`print_ledger` with the demo: one config, one way of printing, the same figures
everywhere. Methodology: docs/energy.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from edgetally.commands import CommandError, UsageError

energy_app = typer.Typer(
    help="Energy and CO2e: the edge device against streaming to the cloud.", no_args_is_help=True
)

CONFIG_HELP = (
    "Energy config (YAML/JSON): accounting, assumptions, grid overrides, what each device "
    "(site, default) streams and where."
)
TOKEN_ENV = "EDGETALLY_TOKEN"

# The one energy config, as every command that computes a ledger takes it (the energy
# commands also under their older name, --config).
ENERGY_CONFIG = typer.Option(None, "--energy-config", "--config", metavar="FILE", help=CONFIG_HELP)
ENERGY_CONFIG_FILE = typer.Option(None, "--energy-config", metavar="FILE", help=CONFIG_HELP)
HOURS_PER_DAY = typer.Option(
    None,
    "--hours-per-day",
    metavar="HOURS",
    help="At most this many camera hours a day are compared (e.g. opening hours; default "
    "24: every hour the cameras counted).",
)
BITRATE = typer.Option(
    None,
    "--bitrate-mbps",
    metavar="MBPS",
    help="Video bitrate of each camera streamed to the cloud (default 3).",
)
STORE_REGION = typer.Option(
    None,
    "--store-region",
    metavar="REGION",
    help="Grid region of the stores (default WORLD; edgetally energy regions lists them).",
)
CLOUD_REGION = typer.Option(
    None, "--cloud-region", metavar="REGION", help="Grid region of the cloud (default WORLD)."
)
ACCOUNTING = typer.Option(
    None,
    "--accounting",
    metavar="ACCOUNTING",
    help="both (default), attributional or marginal: the figures shown first.",
)
TOKEN = typer.Option(
    None,
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"Bearer token for --api (analyst or more); {TOKEN_ENV} or --token-file keeps it "
    "out of ps.",
)
TOKEN_FILE = typer.Option(
    None,
    "--token-file",
    metavar="FILE",
    help="A file whose first line is the bearer token for --api (instead of --token).",
)


def config_from(
    path: Path | None,
    hours_per_day: float | None = None,
    bitrate_mbps: float | None = None,
    store_region: str | None = None,
    cloud_region: str | None = None,
    accounting: str | None = None,
) -> Any:
    """The energy config of ``--energy-config FILE`` with the flags on top (they set the
    defaults, every device the file's ``sites``/``devices`` do not set otherwise)."""
    from edgetally.fleet.energy.assumptions import load_config, with_flags

    return with_flags(
        load_config(path),
        hours_per_day=hours_per_day,
        bitrate_mbps=bitrate_mbps,
        store_region=store_region,
        cloud_region=cloud_region,
        accounting=accounting,
    )


def config_given(path: Path | None, *flags: object) -> bool:
    return path is not None or any(f is not None for f in flags)


def token_from(token: str | None, token_file: Path | None) -> str | None:
    """The bearer token: the first line of ``token_file`` when given, else ``token``
    (``--token`` or EDGETALLY_TOKEN)."""
    if token_file is None:
        return token
    from edgetally.models.broker_url import BrokerUrlError, read_password_file

    try:
        return read_password_file(token_file, what="token")
    except BrokerUrlError as exc:
        raise CommandError(str(exc)) from None


def api_json(api: str, path: str, params: dict[str, str], token: str | None) -> Any:
    """GET a JSON answer from a running fleet's API (a one-line error when it fails; the
    URL shown without a password)."""
    return api_get(api, path, params, token).json()


def api_get(api: str, path: str, params: dict[str, str], token: str | None) -> Any:
    """GET ``path`` of a running fleet's API with the bearer token; the response, or a
    one-line error naming what went wrong (unreachable, a token wanted or refused, an
    error status with the API's detail), the URL shown without a password."""
    import httpx
    from edgetally.models.redact import redact_url

    shown = redact_url(api)
    headers = {"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}
    try:
        resp = httpx.get(f"{api.rstrip('/')}{path}", params=params, headers=headers, timeout=120)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the fleet API at {shown}: {exc}") from None
    if resp.status_code == 401:
        if not headers:
            raise CommandError(
                f"the fleet API at {shown} wants a token: pass --token-file FILE or set "
                f"{TOKEN_ENV} (or --token TOKEN, which ps shows)"
            )
        raise CommandError(
            f"the fleet API at {shown} refused the token (unknown or revoked): check --token, "
            f"--token-file or {TOKEN_ENV}"
        )
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text[:200]
        if isinstance(detail, list) and detail:
            first = detail[0]
            detail = f"{'.'.join(str(p) for p in first.get('loc', []))}: {first.get('msg')}"
        raise CommandError(f"the fleet API at {shown} answered {resp.status_code}: {detail}")
    return resp


@energy_app.command("baseline")
def baseline(
    bitrate_mbps: float = typer.Option(
        3.0, "--bitrate-mbps", metavar="MBPS", help="Video bitrate of one camera."
    ),
    hours: float = typer.Option(12.0, "--hours", metavar="HOURS", help="Hours a day it streams."),
    store_region: str | None = typer.Option(
        None,
        "--store-region",
        metavar="REGION",
        help="Grid region of the store (required; edgetally energy regions lists them).",
    ),
    cloud_region: str | None = typer.Option(
        None,
        "--cloud-region",
        metavar="REGION",
        help="Grid region of the cloud (required; edgetally energy regions lists them).",
    ),
    fps: float = typer.Option(
        15.0, "--fps", metavar="FPS", help="Frames per second analysed in the cloud."
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="The camera streams no audio."),
    config: Path | None = ENERGY_CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON (full precision)."),
) -> None:
    """Cloud baseline of one camera-day, in both accountings, with its assumptions."""
    from edgetally.fleet.energy.assumptions import GridTable, load_config
    from edgetally.fleet.energy.baseline import CameraSpec, baseline_report

    cfg = load_config(config)
    if store_region is None or cloud_region is None:
        given = (("--store-region", store_region), ("--cloud-region", cloud_region))
        missing = [f"{flag} REGION" for flag, value in given if value is None]
        codes = ", ".join(GridTable(cfg.grid).codes)
        raise UsageError(
            f"missing option{'s' if len(missing) > 1 else ''} {' and '.join(missing)}: a grid "
            f"region, one of {codes} (edgetally energy regions shows their intensities)"
        )
    result = baseline_report(
        CameraSpec(bitrate_mbps, fps, not no_audio),
        hours,
        store_region,
        cloud_region,
        cfg.assumptions,
        GridTable(cfg.grid),
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    r: dict[str, float] = {k: v for k, v in result.items() if isinstance(v, int | float)}
    typer.echo(
        f"one camera, {bitrate_mbps:g} Mb/s at {fps:g} fps, {hours:g} h/day, "
        f"store {result['store_region']}, cloud {result['cloud_region']}\n"
        f"  data uploaded          {r['data_gb']:.1f} GB/day\n"
        f"  network                {r['network_wh_attributional']:.0f} Wh attributional, "
        f"{r['network_wh_marginal']:.1f} Wh marginal\n"
        f"  cloud inference        {r['cloud_inference_wh']:.1f} Wh\n"
        f"  cloud total            {r['cloud_wh_attributional']:.0f} Wh attributional, "
        f"{r['cloud_wh_marginal']:.1f} Wh marginal\n"
        f"  CO2e                   {r['cloud_gco2e_attributional']:.1f} g attributional, "
        f"{r['cloud_gco2e_marginal']:.1f} g marginal"
    )
    typer.echo("assumptions:")
    for a in result["assumptions"]:  # type: ignore[attr-defined]  # the report is JSON: a list of objects
        typer.echo(f"  {a['name']} = {a['value']:g} {a['unit']}  ({a['source']})")


def _when(value: str | None, option: str) -> datetime | None:
    from edgetally.fleet.energy.assumptions import EnergyError

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise EnergyError(f"{option}: not an ISO 8601 date or time: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def ledger(
    *,
    db: str | None,
    api: str | None,
    site: str | None,
    device: str | None,
    start: str | None,
    end: str | None,
    config: Any,
    token: str | None,
) -> dict[str, Any]:
    """The energy report from a database (with ``config``) or a running fleet's API (with
    the fleet's own config: ``config`` is then None)."""
    from edgetally.fleet.energy.assumptions import EnergyError
    from edgetally.fleet.energy.report import report_from_store
    from edgetally.fleet.store.base import is_postgres_url
    from edgetally.fleet.store.connect import open_store
    from edgetally.fleet.store.records import Filters

    if (db is None) == (api is None):
        raise UsageError("give exactly one of --db (a file or postgresql:// URL) or --api URL")
    f = Filters(site=site, device=device, start=_when(start, "--from"), end=_when(end, "--to"))
    if api is not None:
        if config is not None:
            raise UsageError(
                "--api reads the ledger the fleet computes with its own energy config (fleet "
                "serve --energy-config): drop --energy-config and the config flags, or use --db"
            )
        params = {k: v for k, v in (("site", site), ("device", device)) if v is not None}
        for key, when in (("from", f.start), ("to", f.end)):
            if when is not None:
                params[key] = when.isoformat()
        answer: dict[str, Any] = api_json(api, "/api/v1/energy", params, token)
        return answer
    assert db is not None
    if db != ":memory:" and not is_postgres_url(db) and not Path(db).exists():
        from edgetally.models.redact import redact_url

        raise EnergyError(f"no fleet database at {redact_url(db)}")
    store = open_store(db, read_only=not is_postgres_url(db))
    try:
        return report_from_store(store, f, config)
    finally:
        store.close()


@energy_app.command("report")
def report(
    db: str | None = typer.Option(
        None,
        "--db",
        metavar="DB",
        help="Fleet database: DuckDB file (not one a fleet is serving: use --api) or "
        "postgresql:// URL.",
    ),
    api: str | None = typer.Option(
        None,
        "--api",
        metavar="URL",
        help="A running fleet, e.g. http://127.0.0.1:8080 (its own energy config applies).",
    ),
    site: str | None = typer.Option(None, "--site", metavar="SITE", help="Only this site."),
    device: str | None = typer.Option(None, "--device", metavar="DEVICE", help="Only this device."),
    from_: str | None = typer.Option(
        None, "--from", metavar="TIME", help="ISO 8601, inclusive (UTC)."
    ),
    to: str | None = typer.Option(None, "--to", metavar="TIME", help="ISO 8601, exclusive (UTC)."),
    config: Path | None = ENERGY_CONFIG,
    hours_per_day: float | None = HOURS_PER_DAY,
    bitrate_mbps: float | None = BITRATE,
    store_region: str | None = STORE_REGION,
    cloud_region: str | None = CLOUD_REGION,
    accounting: str | None = ACCOUNTING,
    token: str | None = TOKEN,
    token_file: Path | None = TOKEN_FILE,
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Edge Wh and gCO2e per site and device beside the cloud baseline of the camera hours
    they counted, from the fleet's database or its API."""
    show_ledger(
        db=db,
        api=api,
        site=site,
        device=device,
        start=from_,
        end=to,
        config_file=config,
        flags=(hours_per_day, bitrate_mbps, store_region, cloud_region, accounting),
        token=token_from(token, token_file),
        as_json=as_json,
        empty="no power readings match",
    )


# --hours-per-day, --bitrate-mbps, --store-region, --cloud-region, --accounting, as given.
EnergyFlags = tuple[float | None, float | None, str | None, str | None, str | None]


def show_ledger(
    *,
    db: str | None,
    api: str | None,
    site: str | None,
    device: str | None,
    start: str | None,
    end: str | None,
    config_file: Path | None,
    flags: EnergyFlags,
    token: str | None,
    as_json: bool,
    empty: str,
) -> None:
    """The ledger from a database or a fleet's API, printed (``empty`` when no day has power
    readings) or as JSON: what ``energy report`` and ``fleet query energy`` both show. A
    fleet's API applies its own energy config unless one is given here."""
    given = api is None or config_given(config_file, *flags)
    result = ledger(
        db=db,
        api=api,
        site=site,
        device=device,
        start=start,
        end=end,
        config=config_from(config_file, *flags) if given else None,
        token=token,
    )
    if as_json:
        typer.echo(json.dumps(result, default=str))
    elif not result["days"]:
        typer.echo(empty)
    else:
        print_ledger(result, typer.echo, scopes=("sites", "devices"))


# --------------------------------------------------------------------------- printing


def _n(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _x(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}x" if abs(v) >= 100 else f"{v:.2f}x"


def duration(hours: float | None) -> str:
    """Camera time for people: seconds, minutes or hours."""
    if hours is None:
        return "-"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:,.1f} h"


def _pair(accounting: str, attr: str, marg: str) -> str:
    return {"attributional": attr, "marginal": marg}.get(accounting, f"{attr}/{marg}")


def ledger_rows(result: dict[str, Any], scope: str) -> list[list[str]]:
    """The table of one scope ("sites" or "devices"), header first, as text cells."""
    acc = str(result.get("accounting") or "both")
    which = {"attributional": "attr", "marginal": "marg"}.get(acc, "attr/marg")
    key = scope[:-1]
    head = [
        key,
        *(["site"] if key == "device" else []),
        "edge",
        "days",
        "camera time",
        "edge Wh",
        f"edge gCO2e {which}",
        f"cloud Wh {which}",
        f"cloud gCO2e {which}",
        f"cloud/edge {which}",
    ]
    rows = [head]
    for row in result[scope]:
        e, c, r = row["edge"], row["cloud"], row["ratio"]
        rows.append(
            [
                row[key],
                *([row["site"]] if key == "device" else []),
                e["label"],
                str(row["days"]),
                duration(row.get("camera_hours")),
                _n(e["wh"]),
                _pair(acc, _n(e["gco2e"]), _n(e.get("gco2e_marginal", e["gco2e"]))),
                _pair(acc, _n(c["cloud_wh_attributional"]), _n(c["cloud_wh_marginal"])),
                _pair(acc, _n(c["cloud_gco2e_attributional"]), _n(c["cloud_gco2e_marginal"])),
                _pair(acc, _x(r["energy_attributional"]), _x(r["energy_marginal"])),
            ]
        )
    return rows


def _table_lines(rows: list[list[str]], text_columns: int) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def compared_line(result: dict[str, Any]) -> str:
    """Which camera time the ledger compared, and the defaults of the config it used."""
    line = (
        f"compared: {duration(result.get('camera_hours'))} of camera time, "
        f"{result.get('compared_from') or '-'} to {result.get('compared_to') or '-'} (UTC); "
        f"accounting {result.get('accounting', 'both')}"
    )
    d = (result.get("config") or {}).get("defaults")
    if isinstance(d, dict):
        rates = ", ".join(f"{c['bitrate_mbps']:g}" for c in d["cameras"])
        line += (
            f"; defaults: at most {d['hours_per_day']:g} h/day, cameras {rates} Mb/s, "
            f"store {d['store_region']}, cloud {d['cloud_region']}"
        )
        cfg = result["config"]
        entries = [
            f"{len(cfg[k])} {k[:-1]} entr{'y' if len(cfg[k]) == 1 else 'ies'}"
            for k in ("sites", "devices")
            if cfg.get(k)
        ]
        if entries:
            line += f"; and {' and '.join(entries)} of their own"
    return line


def print_ledger(
    result: dict[str, Any], echo: Callable[[str], Any], *, scopes: Sequence[str]
) -> None:
    """The ledger as tables (one per scope), the camera time compared, and the note."""
    for scope in scopes:
        rows = ledger_rows(result, scope)
        text = 3 if scope == "devices" else 2
        echo(f"energy per {scope[:-1]}:")
        for line in _table_lines(rows, text):
            echo(f"  {line}")
    echo(f"  {compared_line(result)}")
    echo(f"  {result['note']}")


@energy_app.command("regions")
def regions(config: Path | None = ENERGY_CONFIG) -> None:
    """The bundled grid intensities (and configured overrides), with sources and years."""
    from edgetally.fleet.energy.assumptions import GridTable, load_config

    grid = GridTable(load_config(config).grid)
    for code in grid.codes:
        i = grid.get(code)
        marginal = (
            f"; marginal {i.marginal_gco2e_per_kwh:g} ({i.marginal_source})"
            if i.marginal_gco2e_per_kwh is not None
            else ""
        )
        typer.echo(f"{code:8} {i.gco2e_per_kwh:7.1f} gCO2e/kWh  {i.source} ({i.year}){marginal}")


def register(app: typer.Typer) -> None:
    app.add_typer(energy_app, name="energy")
