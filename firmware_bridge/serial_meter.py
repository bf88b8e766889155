"""A power-monitor MCU on a serial line (the protocol of serial_protocol.py).

The port is opened raw (termios, no pyserial) and read without blocking; every read
drains what arrived, decodes it, and reports the latest POWER sample. Energy comes from
the MCU's cumulative counter when two samples from the same boot are available.
"""

from __future__ import annotations

import logging
import os
import select
import termios
import time
import tty
from collections.abc import Callable
from datetime import datetime, timedelta

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import PowerReading, utcnow
from edgetally.firmware_bridge.serial_protocol import (
    DecoderStats,
    FrameDecoder,
    Hello,
    LogText,
    Message,
    PowerSample,
    SensorValue,
)

log = logging.getLogger(__name__)

BAUDS = {
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
    230400: termios.B230400,
}
DEFAULT_BAUD = 115200
ENERGY_WRAP = 2**32


def open_serial(port: str, baud: int = DEFAULT_BAUD) -> int:
    """Open ``port`` raw, non-blocking, at ``baud``; return the file descriptor."""
    if baud not in BAUDS:
        raise BridgeError(f"unsupported baud rate {baud} (supported: {', '.join(map(str, BAUDS))})")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise BridgeError(f"cannot open serial port {port}: {exc.strerror or exc}") from exc
    try:
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = BAUDS[baud]
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as exc:
        os.close(fd)
        raise BridgeError(f"{port} is not a serial port: {exc}") from exc
    return fd


class SerialPowerMeter:
    """Reads POWER frames from an MCU; counts and skips bad frames."""

    source = "serial"
    measured = True

    def __init__(
        self,
        port: str,
        baud: int = DEFAULT_BAUD,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self._clock = clock
        self._fd: int | None = open_serial(port, baud)
        self.decoder = FrameDecoder()
        self.hello: Hello | None = None
        self.sensors: dict[int, SensorValue] = {}
        self.latest: PowerSample | None = None
        self._counted: PowerSample | None = None  # the sample the last reading ended on
        self._anchor: tuple[datetime, int] | None = None  # (UTC, uptime_ms) of this boot

    @property
    def stats(self) -> DecoderStats:
        return self.decoder.stats

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, PowerSample):
            self.latest = msg
        elif isinstance(msg, Hello):
            self.hello = msg
            log.info("serial MCU %r, protocol version %d", msg.name, msg.version)
        elif isinstance(msg, SensorValue):
            self.sensors[msg.sensor_id] = msg
        elif isinstance(msg, LogText):
            log.info("serial MCU says: %s", msg.text)

    def poll(self, wait: float = 0.0) -> int:
        """Read and decode whatever is available (waiting up to ``wait`` s for a first byte)."""
        if self._fd is None:
            raise BridgeError(f"serial port {self.port} is closed")
        got = 0
        ready, _, _ = select.select([self._fd], [], [], wait)
        while ready:
            try:
                chunk = os.read(self._fd, 4096)
            except BlockingIOError:
                break
            except OSError as exc:
                raise BridgeError(f"reading {self.port} failed: {exc.strerror or exc}") from exc
            if not chunk:
                break
            got += len(chunk)
            for msg in self.decoder.feed(chunk):
                self._handle(msg)
            ready, _, _ = select.select([self._fd], [], [], 0)
        return got

    def read(self) -> PowerReading:
        """The newest POWER sample; waits up to ``timeout`` for one not yet reported.

        Timestamps follow the MCU's uptime (anchored to UTC at the first sample of each
        boot), so the energy from its counter and the time it covers share one clock.
        """
        deadline = self._clock() + self.timeout
        self.poll(0)
        while self.latest is None or self.latest is self._counted:
            left = deadline - self._clock()
            if left <= 0:
                what = "no valid power frame" if self.latest is None else "no new power frame"
                raise BridgeError(
                    f"{what} from {self.port} within {self.timeout:g} s "
                    f"({self.stats.bad_frames} bad frames skipped)"
                )
            self.poll(min(left, 0.1))
        sample = self.latest
        energy_j = self._energy_since(self._counted, sample)
        if energy_j is None or self._anchor is None:
            self._anchor = (utcnow(), sample.uptime_ms)
        self._counted = sample
        at = self._anchor[0] + timedelta(milliseconds=sample.uptime_ms - self._anchor[1])
        return PowerReading(at, sample.watts, energy_j)

    @staticmethod
    def _energy_since(before: PowerSample | None, after: PowerSample) -> float | None:
        if before is None or after.uptime_ms < before.uptime_ms:
            return None  # first sample, or the MCU rebooted: fall back to watts
        delta = (after.energy_mj - before.energy_mj) % ENERGY_WRAP
        return delta / 1000.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
