"""`edgetally demo`: a broker, the fleet, one real device on a real clip, simulated stores."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from edgetally.models.errors import EdgetallyError
from edgetally.progress import progress

DEMO_SITE, DEMO_DEVICE, DEMO_BUCKET_S = "demo-shop", "demo-cam", 10
POWER_SOURCES = ("auto", "rapl", "hwmon", "pi5", "plug", "serial", "estimate", "none")


def _per_site(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's daily traffic rows (one per device, line and day) summed per site: in,
    out and how many days."""
    per_site: dict[str, list[int]] = {}
    days: dict[str, set[str]] = {}
    for row in rows:
        entry = per_site.setdefault(row["site"], [0, 0])
        entry[0] += int(row["in"])
        entry[1] += int(row["out"])
        days.setdefault(row["site"], set()).add(str(row["bucket"]))
    return [
        {"site": s, "in": v[0], "out": v[1], "days": len(days[s])}
        for s, v in sorted(per_site.items())
    ]


def _energy_config(stores: list[str], device_hours: float) -> Any:
    """The ledger's setup: the stores replay whole days (24 h of camera each); the real
    device streamed only as long as the demo ran. Everything else: the central defaults."""
    from edgetally.fleet.energy.assumptions import DeviceEnergyConfig, EnergyConfig

    day = DeviceEnergyConfig(hours=24.0)
    hours = min(24.0, max(device_hours, 1.0 / 3600))
    devices = {name: day for name in stores} | {DEMO_DEVICE: DeviceEnergyConfig(hours=hours)}
    return EnergyConfig(devices=devices)


def _print_energy(energy: dict[str, Any]) -> None:
    typer.echo(
        f"{'energy per device':<18} {'edge':<9} {'days':>4} {'edge Wh':>10} {'edge gCO2e':>11} "
        f"{'cloud Wh attr/marg':>21} {'cloud gCO2e attr/marg':>22} {'ratio attr/marg':>16}"
    )
    for d in energy["devices"]:
        e, c, r = d["edge"], d["cloud"], d["ratio"]
        ratio = "/".join("-" if v is None else f"{v:.1f}" for v in (
            r["energy_attributional"], r["energy_marginal"]))
        typer.echo(
            f"{d['device']:<18} {e['label']:<9} {d['days']:>4} {e['wh']:>10.2f} "
            f"{e['gco2e']:>11.2f} "
            f"{c['cloud_wh_attributional']:>10.1f}/{c['cloud_wh_marginal']:<10.1f} "
            f"{c['cloud_gco2e_attributional']:>11.1f}/{c['cloud_gco2e_marginal']:<10.1f} "
            f"{ratio:>16}"
        )
    typer.echo("  (ratio = cloud / edge energy; estimated = from a device profile and CPU load, "
               "never shown as measured; assumptions: GET /api/v1/energy)")


def demo(
    source: Path | None = typer.Option(
        None, "--source", help="Video for the real device (default: Debian's vtest.avi)."
    ),
    line: str = typer.Option(
        "entrance=380,100,380,576", "--line", help="The device's counting line [ID=]x1,y1,x2,y2."
    ),
    stores: int = typer.Option(3, "--stores", help="Simulated stores replaying Auckland counts."),
    days: int = typer.Option(14, "--days", help="Days of history each store replays."),
    seconds: float | None = typer.Option(
        None, "--seconds",
        help="Stop the real device after this many seconds (default: it counts the whole "
        "clip; a limit makes its counts depend on this machine's speed).",
    ),
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Frames of the video the real device counts."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the fleet database and outboxes here (default: temp)."
    ),
    http: str = typer.Option(
        "127.0.0.1:0", "--http", help="HOST:PORT of the fleet's API (default: a free port)."
    ),
    power_source: str = typer.Option(
        "auto", "--power-source",
        help="The real device's power meter: auto|rapl|hwmon|pi5|estimate|none.",
    ),
    serve: bool | None = typer.Option(
        None, "--serve/--no-serve", "--keep-serving",
        help="Leave the broker, fleet, API and dashboard up after the run, until Ctrl-C "
        "(default: --serve in a terminal, --no-serve when not interactive).",
    ),
    embedded_broker: bool = typer.Option(
        False, "--embedded-broker",
        help="Use the embedded Python broker (amqtt) even when Mosquitto is installed.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary."),
) -> None:
    """Start a broker and the fleet, count a real clip on a device, replay stores; report."""
    from edgetally.demo import (
        VTEST,
        api_get,
        demo_pipeline,
        plan_stores,
        replay_store,
        start_broker,
        unsent,
    )
    from edgetally.fleet.http.energy import energy_config_hook
    from edgetally.fleet.server import FleetConfig, FleetServer
    from edgetally.runtime.config import parse_config
    from edgetally.runtime.device import Device
    from edgetally.runtime.uplink.outbox import Outbox

    video = source or VTEST
    if not video.exists():
        raise EdgetallyError(
            f"demo video {video} not found: install Debian's opencv-doc or pass --source"
        )
    if stores < 0 or days < 1 or (seconds is not None and seconds <= 0):
        raise EdgetallyError("--stores must be >= 0, --days >= 1 and --seconds > 0")
    if power_source not in POWER_SOURCES:
        raise EdgetallyError(f"--power-source {power_source!r}: use {', '.join(POWER_SOURCES)}")
    name, _, numbers = line.partition("=") if "=" in line else ("entrance", "", line)
    try:
        points = [float(v) for v in numbers.split(",")]
    except ValueError:
        points = []
    work = data_dir or Path(tempfile.mkdtemp(prefix="edgetally-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "fleet.duckdb"
    say: Callable[[str], None] = (lambda text: None) if as_json else typer.echo
    if serve is None:  # a person at a terminal gets the addresses alive
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    t0 = time.monotonic()

    broker = start_broker(work, embedded=embedded_broker)
    say(f"broker: {broker.kind} at {broker.url}")
    fleet = FleetServer(
        FleetConfig.of(
            broker.url, str(db), http, client_id="edgetally-demo-fleet",
            mqtt_v5=broker.kind != "amqtt",  # the embedded broker speaks MQTT 3.1.1 only
        ),
        app_hooks=[energy_config_hook(_energy_config([], 0.0))],
    )
    stop = threading.Event()
    device_thread: threading.Thread | None = None
    try:
        fleet.start()
        api = fleet.http_url
        say(f"fleet: DuckDB {db}, ingesting edgetally/v1/#")
        say(f"API: {api}/docs  (dashboard: {api}/dashboard)")
        config = parse_config(
            {
                "site": DEMO_SITE, "device": DEMO_DEVICE, "broker": broker.url,
                "outbox": str(work / "device-outbox.db"), "bucket_seconds": DEMO_BUCKET_S,
                "drain_timeout_s": 10,
                "power": {"source": power_source, "profile": "edge-box"},
                "cameras": [{
                    "id": "door", "source": str(video), "max_frames": max_frames,
                    "lines": [{"id": name or "entrance", "points": points}],
                }],
            },
            origin="demo",
        )
        # The device's frames as a bar on a terminal (stderr; nothing with --json or a pipe).
        bars = contextlib.ExitStack()
        told = bars.enter_context(progress("frames", quiet=as_json))
        device = Device(config, stop=stop, pipeline_factory=demo_pipeline, progress=told)
        outcome: dict[str, Any] = {}

        def run_device() -> None:
            started = time.monotonic()
            try:
                outcome["report"] = device.run(drain_timeout=10)
            except EdgetallyError as exc:
                outcome["error"] = str(exc)
            outcome["seconds"] = time.monotonic() - started

        device_thread = threading.Thread(target=run_device, name="demo-device", daemon=True)
        device_thread.start()
        say(f"device {DEMO_DEVICE}: counting {video.name} on line {line}, "
            f"power source {power_source}")

        plans = plan_stores(stores, days)
        replayed = [replay_store(p, work / f"{p.device}-outbox.db", broker.url) for p in plans]
        say(f"stores: {len(plans)} replayed {days} days of hourly Auckland counts "
            "(Heart of the City Auckland, CC BY 4.0), with estimated power per hour")

        # The device counts the whole clip (unless --seconds cuts it short).
        deadline = None if seconds is None else t0 + seconds
        while device_thread.is_alive() and (deadline is None or time.monotonic() < deadline):
            device_thread.join(timeout=0.5)
        stop.set()
        device_thread.join(timeout=60)
        bars.close()
        report = outcome.get("report")
        with Outbox(config.outbox) as box:
            left_aggs, left_power = unsent(box)
        dev_power = report.power.buckets if report and report.power else 0
        published = sum(r.published_aggregates for r in replayed)
        published += max(0, device.produced - left_aggs)
        power_published = sum(r.published_power for r in replayed)
        power_published += max(0, dev_power - left_power)
        # Let the ingest catch up with what the broker acknowledged.
        fleet.ingestor.wait_until(
            lambda c: c.aggregates_new + c.aggregates_duplicate >= published
            and c.power_new + c.power_duplicate >= power_published,
            30,
        )
        counters = fleet.counters()

        since = (datetime.now(UTC) - timedelta(days=days + 1)).replace(microsecond=0)
        traffic = api_get(api, "/api/v1/traffic", {"interval": "day", "from": since.isoformat()})
        rows = _per_site(traffic["rows"])
        if fleet.app is not None:  # the API's ledger now knows how long each device ran
            fleet.app.state.energy = _energy_config(
                [p.device for p in plans], float(outcome.get("seconds", 0.0)) / 3600
            )
        ledger = api_get(api, "/api/v1/energy")
        energy = {k: ledger[k] for k in ("label", "measured", "devices", "sites", "note")}
        frames = sum(c.frames for c in report.cameras) if report else 0
        summary: dict[str, Any] = {
            "broker": {"kind": broker.kind, "url": broker.url},
            "fleet_db": str(db),
            "api": api,
            "device": {
                **(report.as_json() if report else {"aggregates": 0, "lines": []}),
                "frames": frames,
                "error": outcome.get("error"),
            },
            "stores": len(plans),
            "published": published,
            "stored": counters.aggregates_new,
            "duplicates": counters.aggregates_duplicate,
            "dead_letters": counters.dead_letters,
            "power": {"published": power_published, "stored": counters.power_new},
            "traffic": rows,
            "energy": energy,
        }
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            if report:
                for item in report.lines():
                    typer.echo(f"device {DEMO_DEVICE}: line {item['line']} in {item['in']}, "
                               f"out {item['out']} ({frames} frames)")
            if outcome.get("error"):
                typer.echo(f"device {DEMO_DEVICE} stopped: {outcome['error']}")
            typer.echo(
                f"published {published} aggregates and {power_published} power readings; the "
                f"fleet stored {counters.aggregates_new} and {counters.power_new} "
                f"({counters.aggregates_duplicate} duplicates dropped, "
                f"{counters.dead_letters} dead letters)"
            )
            typer.echo(f"traffic from {api}/api/v1/traffic:")
            typer.echo(f"{'site':<44} {'days':>4} {'in':>8} {'out':>8}")
            for item in rows:
                typer.echo(f"{item['site']:<44} {item['days']:>4} {item['in']:>8} "
                           f"{item['out']:>8}")
            _print_energy(energy)
        if serve:
            typer.echo(f"serving the dashboard at {api}/dashboard/; Ctrl-C ends", err=as_json)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        stop.set()  # an interrupted run: the device stops after its current frame
        if device_thread is not None:
            device_thread.join(timeout=30)
        fleet.stop()
        broker.stop()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
