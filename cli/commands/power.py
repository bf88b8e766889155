"""`edgetally power read|simulate-serial`: measured (or estimated) device power."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import sample
from edgetally.firmware_bridge.sources import SOURCES, SourceOptions, open_source

log = logging.getLogger("edgetally.power")

power_app = typer.Typer(
    help="Device power: read a meter, or simulate a serial MCU.", no_args_is_help=True
)


@power_app.command("read")
def read(
    source: str = typer.Option(
        "auto",
        "--source",
        metavar="SOURCE",
        help=f"auto or one of: {', '.join(SOURCES)}. auto logs what it picked.",
    ),
    seconds: float = typer.Option(
        3.0, "--seconds", metavar="SECONDS", help="How long to sample (about 1 read/s)."
    ),
    interval: float = typer.Option(
        1.0, "--interval", metavar="SECONDS", help="Seconds between reads."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {source, measured, watts, wh}."),
    rail: str = typer.Option(
        "VDD_IN", "--rail", metavar="RAIL", help="INA3221 rail label or channel number."
    ),
    plug_broker: str | None = typer.Option(
        None, "--plug-broker", metavar="URL", help="The plug's MQTT broker, mqtt://HOST:PORT."
    ),
    plug_topic: str | None = typer.Option(
        None,
        "--plug-topic",
        metavar="TOPIC",
        help="Tasmota topic (plug1 -> tele/plug1/SENSOR) or <id>/events/rpc.",
    ),
    plug_timeout: float = typer.Option(
        15.0, "--plug-timeout", metavar="SECONDS", help="Wait for a plug message."
    ),
    serial_port: str | None = typer.Option(
        None, "--serial-port", metavar="PORT", help="Serial power monitor, e.g. /dev/ttyACM0."
    ),
    serial_baud: int = typer.Option(115200, "--serial-baud", metavar="BAUD", help="Baud rate."),
    profile: str | None = typer.Option(
        None,
        "--profile",
        metavar="PROFILE",
        help="Device profile for the estimate: rpi4, rpi4-coral, n100, edge-box.",
    ),
    idle_w: float | None = typer.Option(
        None, "--idle-w", metavar="WATTS", help="Custom profile: idle watts."
    ),
    max_w: float | None = typer.Option(
        None, "--max-w", metavar="WATTS", help="Custom profile: watts at full CPU."
    ),
    powercap_root: Path = typer.Option(Path("/sys/class/powercap"), "--powercap-root", hidden=True),
    hwmon_root: Path = typer.Option(Path("/sys/class/hwmon"), "--hwmon-root", hidden=True),
    proc_stat: Path = typer.Option(Path("/proc/stat"), "--proc-stat", hidden=True),
) -> None:
    """Sample a power source for --seconds and print the mean watts and the energy (Wh)."""
    if source != "auto" and source not in SOURCES:
        raise BridgeError(f"unknown --source {source!r} (choose auto, {', '.join(SOURCES)})")
    options = SourceOptions(
        powercap_root=powercap_root,
        hwmon_root=hwmon_root,
        rail=rail,
        plug_broker=plug_broker,
        plug_topic=plug_topic,
        plug_timeout=plug_timeout,
        serial_port=serial_port,
        serial_baud=serial_baud,
        profile=profile,
        idle_w=idle_w,
        max_w=max_w,
        proc_stat=proc_stat,
    )
    meter = open_source(source, options)
    try:
        result = sample(meter, seconds, interval)
    finally:
        meter.close()
    if as_json:
        typer.echo(json.dumps(result.as_json()))
        return
    label = "measured" if result.measured else "ESTIMATED (not measured)"
    typer.echo(
        f"{result.source}: {result.watts:.2f} W mean, {result.wh:.4f} Wh over "
        f"{result.seconds:.1f} s, {label}"
    )


@power_app.command("simulate-serial")
def simulate_serial(
    watts: float = typer.Option(
        5.0, "--watts", metavar="WATTS", help="Power the simulated MCU reports."
    ),
    interval: float = typer.Option(
        1.0, "--interval", metavar="SECONDS", help="Seconds between POWER frames."
    ),
) -> None:
    """Run a simulated power-monitor MCU on a pseudo-terminal until interrupted."""
    import time

    from edgetally.firmware_bridge.serial_sim import SerialSimulator

    if watts < 0 or interval <= 0:
        raise BridgeError("--watts must be >= 0 and --interval > 0")
    with SerialSimulator(watts=watts) as sim:
        sim.start(interval)
        typer.echo(f"simulated MCU on {sim.port} (Ctrl-C to stop)")
        typer.echo(f"try: edgetally power read --source serial --serial-port {sim.port}")
        while True:
            time.sleep(3600)


def register(app: typer.Typer) -> None:
    app.add_typer(power_app, name="power")
