"""`edgetally demo`: a broker, the fleet, one real device on a real clip, simulated stores."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from edgetally.models.errors import EdgetallyError


def demo(
    source: Path | None = typer.Option(
        None, "--source", help="Video for the real device (default: Debian's vtest.avi)."
    ),
    line: str = typer.Option(
        "entrance=380,100,380,576", "--line", help="The device's counting line [ID=]x1,y1,x2,y2."
    ),
    stores: int = typer.Option(3, "--stores", help="Simulated stores replaying Auckland counts."),
    days: int = typer.Option(14, "--days", help="Days of history each store replays."),
    seconds: float = typer.Option(60.0, "--seconds", help="How long the demo runs."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Frames of the video the real device counts."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Keep the fleet database and outboxes here (default: temp)."
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Keep the broker and fleet up after the run, until Ctrl-C."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary."),
) -> None:
    """Start a broker and the fleet, count a real clip on a device, replay stores; report."""
    from edgetally.demo import VTEST, DemoIngest, plan_stores, replay_store, start_broker
    from edgetally.fleet.queries import traffic
    from edgetally.fleet.records import Filters
    from edgetally.fleet.store_duckdb import DuckDBStore
    from edgetally.runtime.config import parse_config
    from edgetally.runtime.device import Device

    video = source or VTEST
    if not video.exists():
        raise EdgetallyError(
            f"demo video {video} not found: install Debian's opencv-doc or pass --source"
        )
    if stores < 0 or days < 1 or seconds <= 0:
        raise EdgetallyError("--stores must be >= 0, --days >= 1 and --seconds > 0")
    name, _, numbers = line.partition("=") if "=" in line else ("entrance", "", line)
    try:
        points = [float(v) for v in numbers.split(",")]
    except ValueError:
        points = []
    work = data_dir or Path(tempfile.mkdtemp(prefix="edgetally-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda text: None) if as_json else typer.echo
    t0 = time.monotonic()

    broker = start_broker(work)
    say(f"broker: {broker.kind} at {broker.url}")
    store = DuckDBStore(str(work / "fleet.duckdb"))
    ingest = DemoIngest(store, broker.port)
    say(f"fleet: DuckDB {work / 'fleet.duckdb'} (ingest subscribed to edgetally/v1/#)")
    try:
        config = parse_config(
            {
                "site": "demo-shop", "device": "demo-cam", "broker": broker.url,
                "outbox": str(work / "device-outbox.db"), "bucket_seconds": 10,
                "drain_timeout_s": 10,
                "cameras": [{
                    "id": "door", "source": str(video), "max_frames": max_frames,
                    "lines": [{"id": name or "entrance", "points": points}],
                }],
            },
            origin="demo",
        )
        stop = threading.Event()
        device = Device(config, stop=stop)
        outcome: dict[str, Any] = {}

        def run_device() -> None:
            try:
                outcome["report"] = device.run(drain_timeout=10)
            except EdgetallyError as exc:
                outcome["error"] = str(exc)

        device_thread = threading.Thread(target=run_device, name="demo-device", daemon=True)
        device_thread.start()
        say(f"device demo-cam: counting {video.name} on line {line}")

        plans = plan_stores(stores, days)
        replayed: list[tuple[int, int]] = []
        for plan in plans:
            replayed.append(
                replay_store(plan, work / f"{plan.device}-outbox.db", broker.url)
            )
        say(f"stores: {len(plans)} replayed {days} days of hourly Auckland counts "
            "(Heart of the City Auckland, CC BY 4.0)")

        deadline = t0 + seconds
        while device_thread.is_alive() and time.monotonic() < deadline:
            device_thread.join(timeout=0.5)
        stop.set()
        device_thread.join(timeout=60)
        report = outcome.get("report")
        published = sum(acked for _, acked in replayed)
        if device.publisher is not None:
            published += device.publisher.acked
        # Let the ingest catch up with what the broker acknowledged.
        wait_until = time.monotonic() + 15
        while ingest.stored() < published and time.monotonic() < wait_until:
            time.sleep(0.2)
        stored = ingest.stored()

        since = datetime.now(UTC) - timedelta(days=days + 1)
        table = traffic(store, Filters(start=since, interval="day"), max_rows=100_000)
        per_site: dict[str, list[int]] = {}
        for row in table.rows:
            _bucket, site, _dev, _line, n_in, n_out = row
            entry = per_site.setdefault(site, [0, 0, 0])
            entry[0] += int(n_in)
            entry[1] += int(n_out)
            entry[2] += 1
        frames = sum(c.frames for c in report.cameras) if report else 0
        rows = [
            {"site": s, "in": v[0], "out": v[1], "days": v[2]}
            for s, v in sorted(per_site.items())
        ]
        summary: dict[str, Any] = {
            "broker": {"kind": broker.kind, "url": broker.url},
            "fleet_db": str(work / "fleet.duckdb"),
            "api": None,
            "device": {
                **(report.as_json() if report else {"aggregates": 0, "lines": []}),
                "frames": frames,
                "error": outcome.get("error"),
            },
            "stores": len(plans),
            "published": published,
            "stored": stored,
            "duplicates": ingest.duplicates,
            "dead_letters": ingest.dead,
            "traffic": rows,
        }
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            if report:
                for item in report.lines():
                    typer.echo(f"device demo-cam: line {item['line']} in {item['in']}, "
                               f"out {item['out']} ({frames} frames)")
            if outcome.get("error"):
                typer.echo(f"device demo-cam stopped: {outcome['error']}")
            typer.echo(f"published {published} aggregates; the fleet stored {stored} "
                       f"({ingest.duplicates} duplicates dropped, {ingest.dead} dead letters)")
            typer.echo(f"{'site':<44} {'days':>4} {'in':>8} {'out':>8}")
            for item in rows:
                typer.echo(f"{item['site']:<44} {item['days']:>4} {item['in']:>8} "
                           f"{item['out']:>8}")
        if serve:
            typer.echo(f"serving: broker {broker.url}, fleet {work / 'fleet.duckdb'}; Ctrl-C ends")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        ingest.close()
        store.close()
        broker.stop()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
