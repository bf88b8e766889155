"""The framed binary protocol spoken by a power-monitor or sensor MCU on a serial line.

See SERIAL_PROTOCOL.md next to this file for the byte layout. This module is pure: it
encodes messages to frames and decodes a byte stream back to messages, counting and
skipping what is malformed (bad CRC, bad length, unknown type, noise between frames).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

SYNC = b"\xa5\x5a"
MAX_PAYLOAD = 64
HEADER = 4  # sync (2) + length (1) + type (1)
TRAILER = 2  # CRC-16/CCITT-FALSE, little-endian

TYPE_HELLO = 0x01
TYPE_POWER = 0x02
TYPE_SENSOR = 0x03
TYPE_LOG = 0x04

_POWER = struct.Struct("<IIIiI")  # seq, uptime_ms, bus_mv, current_ua, energy_mj
_SENSOR = struct.Struct("<BBi")  # sensor_id, kind, value (milli-units)

SENSOR_KINDS = {1: "temperature_c", 2: "humidity_pct", 3: "illuminance_lux", 4: "sound_dba"}


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor.

    The standard library's ``binascii.crc_hqx`` is this CRC when started at 0xFFFF.
    """
    return binascii.crc_hqx(data, crc)


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    name: str


@dataclass(frozen=True, slots=True)
class PowerSample:
    seq: int
    uptime_ms: int
    bus_mv: int
    current_ua: int
    energy_mj: int  # cumulative since the MCU booted, wraps at 2**32

    @property
    def watts(self) -> float:
        return max(0.0, self.bus_mv * self.current_ua / 1e9)


@dataclass(frozen=True, slots=True)
class SensorValue:
    sensor_id: int
    kind: int
    value_milli: int

    @property
    def value(self) -> float:
        return self.value_milli / 1000.0

    @property
    def kind_name(self) -> str:
        return SENSOR_KINDS.get(self.kind, f"kind{self.kind}")


@dataclass(frozen=True, slots=True)
class LogText:
    text: str


Message = Hello | PowerSample | SensorValue | LogText


def frame(msg_type: int, payload: bytes) -> bytes:
    """One frame: sync, length, type, payload, CRC over length+type+payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([len(payload), msg_type]) + payload
    return SYNC + body + crc16_ccitt(body).to_bytes(2, "little")


def encode(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        return frame(TYPE_HELLO, bytes([msg.version]) + msg.name.encode()[: MAX_PAYLOAD - 1])
    if isinstance(msg, PowerSample):
        return frame(
            TYPE_POWER,
            _POWER.pack(msg.seq, msg.uptime_ms, msg.bus_mv, msg.current_ua, msg.energy_mj),
        )
    if isinstance(msg, SensorValue):
        return frame(TYPE_SENSOR, _SENSOR.pack(msg.sensor_id, msg.kind, msg.value_milli))
    return frame(TYPE_LOG, msg.text.encode()[:MAX_PAYLOAD])


class _BadLength(Exception):
    pass


def _decode_payload(msg_type: int, payload: bytes) -> Message:
    if msg_type == TYPE_HELLO:
        if len(payload) < 1:
            raise _BadLength
        return Hello(payload[0], payload[1:].decode(errors="replace"))
    if msg_type == TYPE_POWER:
        if len(payload) != _POWER.size:
            raise _BadLength
        return PowerSample(*_POWER.unpack(payload))
    if msg_type == TYPE_SENSOR:
        if len(payload) != _SENSOR.size:
            raise _BadLength
        return SensorValue(*_SENSOR.unpack(payload))
    return LogText(payload.decode(errors="replace"))


KNOWN_TYPES = frozenset({TYPE_HELLO, TYPE_POWER, TYPE_SENSOR, TYPE_LOG})


@dataclass
class DecoderStats:
    frames: int = 0
    bad_crc: int = 0
    bad_length: int = 0
    unknown_type: int = 0
    skipped_bytes: int = 0

    @property
    def bad_frames(self) -> int:
        return self.bad_crc + self.bad_length + self.unknown_type


@dataclass
class FrameDecoder:
    """Feed it bytes as they arrive; it returns the messages of the complete, valid frames.

    On a bad CRC or an impossible length it drops one byte and searches for the next sync,
    so a corrupted frame never swallows the good frame after it.
    """

    stats: DecoderStats = field(default_factory=DecoderStats)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.stats.skipped_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
                break
            if start:
                self.stats.skipped_bytes += start
                del buf[:start]
            if len(buf) < HEADER:
                break
            length, msg_type = buf[2], buf[3]
            if length > MAX_PAYLOAD:
                self.stats.bad_length += 1
                self._drop(1)
                continue
            end = HEADER + length + TRAILER
            if len(buf) < end:
                break
            body = bytes(buf[2 : HEADER + length])
            crc = int.from_bytes(buf[HEADER + length : end], "little")
            if crc != crc16_ccitt(body):
                self.stats.bad_crc += 1
                self._drop(1)
                continue
            payload = body[2:]
            del buf[:end]
            if msg_type not in KNOWN_TYPES:
                self.stats.unknown_type += 1
                continue
            try:
                out.append(_decode_payload(msg_type, payload))
            except _BadLength:
                self.stats.bad_length += 1
                continue
            self.stats.frames += 1
        return out

    def _drop(self, n: int) -> None:
        self.stats.skipped_bytes += n
        del self._buf[:n]
