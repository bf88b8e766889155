"""`edgetally energy baseline|report|regions`: the edge-vs-cloud energy ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from edgetally.commands import UsageError

energy_app = typer.Typer(
    help="Energy and CO2e: the edge device against streaming to the cloud.", no_args_is_help=True
)

CONFIG_HELP = (
    "Energy config (YAML/JSON): assumptions, grid overrides, devices' cameras and regions."
)


@energy_app.command("baseline")
def baseline(
    bitrate_mbps: float = typer.Option(
        3.0, "--bitrate-mbps", metavar="MBPS", help="Video bitrate of one camera."
    ),
    hours: float = typer.Option(12.0, "--hours", metavar="HOURS", help="Hours a day it streams."),
    store_region: str | None = typer.Option(
        None, "--store-region", metavar="REGION",
        help="Grid region of the store (required; edgetally energy regions lists them).",
    ),
    cloud_region: str | None = typer.Option(
        None, "--cloud-region", metavar="REGION",
        help="Grid region of the cloud (required; edgetally energy regions lists them).",
    ),
    fps: float = typer.Option(
        15.0, "--fps", metavar="FPS", help="Frames per second analysed in the cloud."
    ),
    no_audio: bool = typer.Option(False, "--no-audio", help="The camera streams no audio."),
    config: Path | None = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP),
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


@energy_app.command("report")
def report(
    db: str = typer.Option(
        ..., "--db", metavar="DB", help="Fleet database: DuckDB file or postgresql:// URL."
    ),
    site: str | None = typer.Option(None, "--site", metavar="SITE", help="Only this site."),
    device: str | None = typer.Option(
        None, "--device", metavar="DEVICE", help="Only this device."
    ),
    from_: str | None = typer.Option(
        None, "--from", metavar="TIME", help="ISO 8601, inclusive (UTC)."
    ),
    to: str | None = typer.Option(None, "--to", metavar="TIME", help="ISO 8601, exclusive (UTC)."),
    config: Path | None = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Edge Wh and gCO2e per device and site beside the cloud baseline, from the fleet DB."""
    from edgetally.fleet.energy.assumptions import EnergyError, load_config
    from edgetally.fleet.energy.report import report_from_store
    from edgetally.fleet.store.base import is_postgres_url, open_store
    from edgetally.fleet.store.records import Filters

    cfg = load_config(config)
    f = Filters(site=site, device=device, start=_when(from_, "--from"), end=_when(to, "--to"))
    if db != ":memory:" and not is_postgres_url(db) and not Path(db).exists():
        raise EnergyError(f"no fleet database at {db}")
    store = open_store(db, read_only=not is_postgres_url(db))
    try:
        result = report_from_store(store, f, cfg)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    if not result["days"]:
        typer.echo("no power readings match")
        return
    for scope in ("sites", "devices"):
        key = scope[:-1]
        typer.echo(f"{scope}:")
        for row in result[scope]:  # type: ignore[attr-defined]  # the report is JSON: a list of objects
            e, c, ratio = row["edge"], row["cloud"], row["ratio"]
            typer.echo(
                f"  {row[key]}: {row['days']} day(s), edge {e['wh']:.1f} Wh "
                f"[{e['label'].upper()}] {e['gco2e']:.1f} gCO2e | cloud "
                f"{c['cloud_wh_attributional']:.0f} Wh / {c['cloud_gco2e_attributional']:.1f} g "
                f"attributional, {c['cloud_wh_marginal']:.1f} Wh / "
                f"{c['cloud_gco2e_marginal']:.1f} g marginal | cloud/edge energy "
                f"{_fmt(ratio['energy_attributional'])} attr, {_fmt(ratio['energy_marginal'])} marg"
            )
    typer.echo(str(result["note"]))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


@energy_app.command("regions")
def regions(
    config: Path | None = typer.Option(None, "--config", metavar="FILE", help=CONFIG_HELP),
) -> None:
    """The bundled grid intensities (and configured overrides), with sources and years."""
    from edgetally.fleet.energy.assumptions import GridTable, load_config

    grid = GridTable(load_config(config).grid)
    for code in grid.codes:
        i = grid.get(code)
        typer.echo(f"{code:8} {i.gco2e_per_kwh:7.1f} gCO2e/kWh  {i.source} ({i.year})")


def register(app: typer.Typer) -> None:
    app.add_typer(energy_app, name="energy")
