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
from edgetally.commands import sigterm_as_interrupt
from edgetally.commands.energy import (
    ACCOUNTING,
    BITRATE,
    CLOUD_REGION,
    ENERGY_CONFIG_FILE,
    HOURS_PER_DAY,
    STORE_REGION,
)
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


def _energy_config(plans: list[Any], path: Path | None, flags: tuple[Any, ...]) -> Any:
    """The energy config the demo's fleet computes its ledger with: ``--energy-config`` and
    the flags (as ``fleet serve`` and ``energy report`` take them); without a file or a
    ``--store-region``, the simulated stores' sites on New Zealand's grid (they replay
    Auckland). Everything else: the central defaults."""
    from edgetally.commands.energy import config_from
    from edgetally.fleet.energy.assumptions import DeviceEnergyConfig

    config = config_from(path, *flags)
    store_region = flags[2]
    if path is None and store_region is None:
        auckland = {p.site: DeviceEnergyConfig(store_region="NZ") for p in plans}
        config = config.model_copy(update={"sites": auckland})
    return config


def _print_energy(energy: dict[str, Any], db: Path, config: Path) -> None:
    """The ledger per device, printed as ``energy report`` prints it (the same lines)."""
    from edgetally.commands.energy import print_ledger

    print_ledger(energy, typer.echo, scopes=("devices",))
    typer.echo(
        "  (estimated = from a device profile and CPU load, never shown as measured; every "
        "assumption: GET /api/v1/energy; the same figures: edgetally energy report --db "
        f"{db} --energy-config {config})"
    )


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
        None,
        "--seconds",
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
        "auto",
        "--power-source",
        help="The real device's power meter: auto|rapl|hwmon|pi5|estimate|none.",
    ),
    serve: bool | None = typer.Option(
        None,
        "--serve/--no-serve",
        "--keep-serving",
        help="Leave the broker, fleet, API and dashboard up after the run, until Ctrl-C "
        "(default: --serve in a terminal, --no-serve when not interactive).",
    ),
    embedded_broker: bool = typer.Option(
        False,
        "--embedded-broker",
        help="Use the embedded Python broker (amqtt) even when Mosquitto is installed.",
    ),
    energy_config: Path | None = ENERGY_CONFIG_FILE,
    hours_per_day: float | None = HOURS_PER_DAY,
    bitrate_mbps: float | None = BITRATE,
    store_region: str | None = STORE_REGION,
    cloud_region: str | None = CLOUD_REGION,
    accounting: str | None = ACCOUNTING,
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
    from edgetally.fleet.config import FleetConfig
    from edgetally.fleet.http.energy import energy_config_hook
    from edgetally.fleet.server import FleetServer
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
    plans = plan_stores(stores, days)
    # One energy config for the demo's fleet, written beside its database: energy report
    # and fleet serve given the same file give the same figures.
    from edgetally.fleet.energy.assumptions import dump_config

    ledger_config = _energy_config(
        plans,
        energy_config,
        (hours_per_day, bitrate_mbps, store_region, cloud_region, accounting),
    )
    work = data_dir or Path(tempfile.mkdtemp(prefix="edgetally-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "fleet.duckdb"
    say: Callable[[str], None] = (lambda text: None) if as_json else typer.echo
    if serve is None:  # a person at a terminal gets the addresses alive
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    t0 = time.monotonic()

    energy_file = work / "energy.yaml"
    energy_file.write_text(dump_config(ledger_config))

    # SIGTERM (systemd, a container runtime, kill) ends the demo as Ctrl-C does: the device
    # stops, the fleet and the broker (a Mosquitto child process) are stopped too.
    came: list[str] = []
    guard = contextlib.ExitStack()
    guard.enter_context(sigterm_as_interrupt(came))
    broker = start_broker(work, embedded=embedded_broker)
    say(f"broker: {broker.kind} at {broker.url}")
    fleet = FleetServer(
        FleetConfig.of(
            broker.url,
            str(db),
            http,
            client_id="edgetally-demo-fleet",
            mqtt_v5=broker.kind != "amqtt",  # the embedded broker speaks MQTT 3.1.1 only
        ),
        app_hooks=[energy_config_hook(ledger_config)],
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
                "site": DEMO_SITE,
                "device": DEMO_DEVICE,
                "broker": broker.url,
                "outbox": str(work / "device-outbox.db"),
                "bucket_seconds": DEMO_BUCKET_S,
                "drain_timeout_s": 10,
                "power": {"source": power_source, "profile": "edge-box"},
                "cameras": [
                    {
                        "id": "door",
                        "source": str(video),
                        "max_frames": max_frames,
                        "lines": [{"id": name or "entrance", "points": points}],
                    }
                ],
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
        say(
            f"device {DEMO_DEVICE}: counting {video.name} on line {line}, "
            f"power source {power_source}"
        )

        replayed = [replay_store(p, work / f"{p.device}-outbox.db", broker.url) for p in plans]
        say(
            f"stores: {len(plans)} replayed {days} days of hourly Auckland counts "
            "(Heart of the City Auckland, CC BY 4.0), with estimated power per hour"
        )

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
            lambda c: (
                c.aggregates_new + c.aggregates_duplicate >= published
                and c.power_new + c.power_duplicate >= power_published
            ),
            30,
        )
        counters = fleet.counters()

        since = (datetime.now(UTC) - timedelta(days=days + 1)).replace(microsecond=0)
        traffic = api_get(api, "/api/v1/traffic", {"interval": "day", "from": since.isoformat()})
        rows = _per_site(traffic["rows"])
        ledger = api_get(api, "/api/v1/energy")
        energy = {
            k: ledger[k]
            for k in (
                "label",
                "measured",
                "accounting",
                "camera_hours",
                "compared_from",
                "compared_to",
                "devices",
                "sites",
                "config",
                "note",
            )
        }
        energy["config_file"] = str(energy_file)
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
                    typer.echo(
                        f"device {DEMO_DEVICE}: line {item['line']} in {item['in']}, "
                        f"out {item['out']} ({frames} frames)"
                    )
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
                typer.echo(f"{item['site']:<44} {item['days']:>4} {item['in']:>8} {item['out']:>8}")
            _print_energy(energy, db, energy_file)
        if serve:
            typer.echo(f"serving the dashboard at {api}/dashboard/; Ctrl-C ends", err=as_json)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                if came:
                    raise  # SIGTERM: the exit code says so
    except KeyboardInterrupt:
        if came:  # stopped by SIGTERM, cleaned up below: exit 143 as a shell reports it
            raise typer.Exit(143) from None
        raise
    finally:
        stop.set()  # an interrupted run: the device stops after its current frame
        if device_thread is not None:
            device_thread.join(timeout=30)
        fleet.stop()
        broker.stop()
        guard.close()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
