"""A simulated power-monitor MCU speaking the serial protocol over a pseudo-terminal.

Tests and demos open ``sim.port`` (e.g. /dev/pts/7) exactly like a real USB serial
device. The simulator can send samples one by one (deterministic, for tests) or run a
background thread at a fixed rate (for demos), and inject corrupted frames on request.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import tty
from collections.abc import Callable
from typing import Literal

from edgetally.firmware_bridge.serial_protocol import (
    SYNC,
    TYPE_POWER,
    Hello,
    Message,
    PowerSample,
    SensorValue,
    encode,
    frame,
)

Corruption = Literal["bad_crc", "bad_length", "unknown_type", "garbage", "truncated", "short_power"]


class SerialSimulator:
    """An MCU at the far end of a pty: constant (or scripted) volts and amps."""

    def __init__(
        self,
        watts: float | Callable[[float], float] = 5.0,
        bus_mv: int = 5000,
        name: str = "edgetally-sim",
    ) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no line discipline: bytes pass untouched
        self.port = os.ttyname(self._slave)
        self.bus_mv = bus_mv
        self.name = name
        self._watts = watts
        self._seq = 0
        self._uptime_ms = 0
        self._energy_mj = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent_frames = 0

    def watts_at(self, t: float) -> float:
        return self._watts(t) if callable(self._watts) else self._watts

    def write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                n = os.write(self._master, view)
                view = view[n:]

    def send(self, msg: Message) -> None:
        self.write(encode(msg))
        self.sent_frames += 1

    def hello(self) -> None:
        self.send(Hello(1, self.name))

    def next_sample(self, elapsed_ms: int = 1000) -> PowerSample:
        """Advance the MCU's clock by ``elapsed_ms`` and build the sample it would send."""
        self._uptime_ms += elapsed_ms
        watts = self.watts_at(self._uptime_ms / 1000.0)
        self._energy_mj += watts * elapsed_ms  # W x ms = mJ
        self._seq += 1
        current_ua = round(watts / (self.bus_mv / 1000.0) * 1e6)
        return PowerSample(
            self._seq, self._uptime_ms, self.bus_mv, current_ua, int(self._energy_mj) % 2**32
        )

    def send_sample(self, elapsed_ms: int = 1000) -> PowerSample:
        sample = self.next_sample(elapsed_ms)
        self.send(sample)
        return sample

    def send_sensor(self, sensor_id: int, kind: int, value: float) -> None:
        self.send(SensorValue(sensor_id, kind, round(value * 1000)))

    def inject(self, corruption: Corruption) -> None:
        """Write one malformed frame (or noise) of the given kind."""
        good = encode(self.next_sample(0))
        if corruption == "bad_crc":
            bad = bytearray(good)
            bad[6] ^= 0xFF
            self.write(bytes(bad))
        elif corruption == "bad_length":
            self.write(SYNC + bytes([0xF0, TYPE_POWER]) + b"\x00" * 8)
        elif corruption == "unknown_type":
            self.write(frame(0x7E, b"\x01\x02\x03"))
        elif corruption == "garbage":
            self.write(b"\x00\xff\xa5\x13\x37 noise \x5a\xa5")
        elif corruption == "truncated":
            self.write(good[: len(good) // 2])
        elif corruption == "short_power":
            self.write(frame(TYPE_POWER, b"\x01\x02\x03\x04"))

    # Background mode, for demos and the `power simulate-serial` command.
    def start(self, interval: float = 1.0) -> None:
        self.hello()

        def loop() -> None:
            last = time.monotonic()
            while not self._stop.wait(interval):
                now = time.monotonic()
                self.send_sample(round((now - last) * 1000))
                last = now

        self._thread = threading.Thread(target=loop, name="serial-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SerialSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
