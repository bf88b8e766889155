"""Power sources by name, and ``auto``: the first that works, saying which and why.

An explicit request that cannot be met is an error naming what is missing; ``auto`` tries
the measured sources in order (rapl, hwmon, pi5, then plug and serial when configured)
and falls back to the CPU-based estimate, logging every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetally.firmware_bridge import estimate, hwmon, pi5, rapl
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerMeter

log = logging.getLogger(__name__)

SOURCES = ("rapl", "hwmon", "pi5", "plug", "serial", "estimate")


@dataclass(frozen=True, slots=True)
class SourceOptions:
    powercap_root: Path = rapl.DEFAULT_ROOT
    hwmon_root: Path = hwmon.DEFAULT_ROOT
    rail: str = hwmon.DEFAULT_RAIL
    vcgencmd: tuple[str, ...] = pi5.DEFAULT_COMMAND
    plug_broker: str | None = None
    plug_topic: str | None = None
    plug_timeout: float = 15.0
    serial_port: str | None = None
    serial_baud: int = 115200
    serial_timeout: float = 3.0
    profile: str | None = None
    idle_w: float | None = None
    max_w: float | None = None
    proc_stat: Path = estimate.DEFAULT_PROC_STAT


def _rapl(o: SourceOptions) -> PowerMeter:
    return rapl.RaplMeter(o.powercap_root)


def _hwmon(o: SourceOptions) -> PowerMeter:
    return hwmon.open_hwmon(o.hwmon_root, o.rail)


def _pi5(o: SourceOptions) -> PowerMeter:
    return pi5.Pi5PmicMeter(o.vcgencmd)


def _plug(o: SourceOptions) -> PowerMeter:
    if not o.plug_broker or not o.plug_topic:
        raise BridgeError("the plug source needs --plug-broker and --plug-topic")
    from edgetally.firmware_bridge.plug import PlugMeter

    return PlugMeter(o.plug_broker, o.plug_topic, o.plug_timeout)


def _serial(o: SourceOptions) -> PowerMeter:
    if not o.serial_port:
        raise BridgeError("the serial source needs --serial-port")
    from edgetally.firmware_bridge.serial_meter import SerialPowerMeter

    return SerialPowerMeter(o.serial_port, o.serial_baud, o.serial_timeout)


def _estimate(o: SourceOptions) -> PowerMeter:
    return estimate.CpuEstimateMeter(estimate.profile(o.profile, o.idle_w, o.max_w), o.proc_stat)


OPENERS: dict[str, Callable[[SourceOptions], PowerMeter]] = {
    "rapl": _rapl,
    "hwmon": _hwmon,
    "pi5": _pi5,
    "plug": _plug,
    "serial": _serial,
    "estimate": _estimate,
}


def open_source(name: str, options: SourceOptions | None = None) -> PowerMeter:
    """Open the named source (or ``auto``); the meter has been read once successfully."""
    o = options or SourceOptions()
    if name == "auto":
        return _auto(o)
    if name not in OPENERS:
        raise BridgeError(f"unknown power source {name!r} (choose auto, {', '.join(SOURCES)})")
    return _probe(OPENERS[name](o))


def _probe(meter: PowerMeter) -> PowerMeter:
    try:
        meter.read()
    except BridgeError:
        meter.close()
        raise
    return meter


def _auto(o: SourceOptions) -> PowerMeter:
    candidates = ["rapl", "hwmon", "pi5"]
    if o.plug_broker and o.plug_topic:
        candidates.append("plug")
    if o.serial_port:
        candidates.append("serial")
    for name in candidates:
        try:
            meter = _probe(OPENERS[name](o))
        except BridgeError as exc:
            log.info("power source %s unavailable: %s", name, exc)
            continue
        log.warning("power source auto: using %s (measured)", name)
        return meter
    log.warning(
        "power source auto: nothing measurable (tried %s); using the CPU-based estimate",
        ", ".join(candidates),
    )
    return _probe(_estimate(o))
