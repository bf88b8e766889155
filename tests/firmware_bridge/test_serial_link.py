"""The serial protocol: codec, decoder resync, and the meter through the pty simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.serial_meter import SerialPowerMeter
from edgetally.firmware_bridge.serial_protocol import (
    TYPE_POWER,
    FrameDecoder,
    Hello,
    LogText,
    Message,
    PowerSample,
    SensorValue,
    crc16_ccitt,
    encode,
    frame,
)
from edgetally.firmware_bridge.serial_sim import SerialSimulator
from hypothesis import given, settings
from hypothesis import strategies as st


def _crc16_ccitt_bitwise(data: bytes) -> int:
    """The CRC written out bit by bit, as an MCU computes it: the reference."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def test_crc_is_ccitt_false() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert _crc16_ccitt_bitwise(b"123456789") == 0x29B1


def test_documented_frame_crc_matches_bitwise_reference() -> None:
    msg = PowerSample(seq=1, uptime_ms=1000, bus_mv=5000, current_ua=1_000_000, energy_mj=5000)
    raw = encode(msg)
    body, trailer = raw[2:-2], raw[-2:]
    assert int.from_bytes(trailer, "little") == _crc16_ccitt_bitwise(body) == crc16_ccitt(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_crc_agrees_with_bitwise_reference(data: bytes) -> None:
    assert crc16_ccitt(data) == _crc16_ccitt_bitwise(data)


def test_documented_example_frame() -> None:
    # The worked example in SERIAL_PROTOCOL.md.
    msg = PowerSample(seq=1, uptime_ms=1000, bus_mv=5000, current_ua=1_000_000, energy_mj=5000)
    raw = encode(msg)
    doc = (Path(__file__).parents[2] / "firmware_bridge" / "SERIAL_PROTOCOL.md").read_text()
    assert raw.hex(" ") in doc
    assert FrameDecoder().feed(raw) == [msg]
    assert msg.watts == pytest.approx(5.0)


def test_every_message_type_round_trips() -> None:
    msgs: list[Message] = [
        Hello(1, "mcu"),
        PowerSample(7, 9, 12000, 250_000, 42),
        SensorValue(2, 1, 21500),
        LogText("hi"),
    ]
    dec = FrameDecoder()
    assert dec.feed(b"".join(encode(m) for m in msgs)) == msgs
    assert dec.stats.frames == 4 and dec.stats.bad_frames == 0


def test_bad_frames_are_counted_and_the_next_good_frame_survives() -> None:
    good = encode(PowerSample(1, 1, 5000, 1000, 0))
    bad_crc = bytearray(good)
    bad_crc[8] ^= 0x01
    stream = (
        bytes(bad_crc)
        + good
        + b"\xa5\x5a\xff\x02"  # length 255 > 64
        + good
        + frame(0x6B, b"x")  # unknown type
        + good
        + frame(TYPE_POWER, b"\x00" * 3)  # wrong length for POWER
        + b"junk\xa5"
        + good
    )
    dec = FrameDecoder()
    out = []
    for i in range(len(stream)):  # byte by byte: frames split across reads
        out += dec.feed(stream[i : i + 1])
    assert len(out) == 4
    assert dec.stats.bad_crc >= 1 and dec.stats.bad_length == 2 and dec.stats.unknown_type == 1


@settings(max_examples=200, deadline=None)
@given(noise=st.lists(st.binary(max_size=40), max_size=6), cut=st.integers(1, 17))
def test_decoder_never_raises_and_finds_frames_after_noise(noise: list[bytes], cut: int) -> None:
    good = encode(PowerSample(3, 3, 5000, 1, 1))
    dec = FrameDecoder()
    stream = b"".join(n + good for n in noise) + good
    out = []
    for i in range(0, len(stream), cut):
        out += dec.feed(stream[i : i + cut])
    # noise may contain accidental frames, but every real frame after it is found
    assert out.count(PowerSample(3, 3, 5000, 1, 1)) >= 1


def test_meter_through_the_pty_with_corrupted_frames() -> None:
    with SerialSimulator(watts=4.0, bus_mv=5000) as sim:
        meter = SerialPowerMeter(sim.port, timeout=2.0)
        try:
            sim.hello()
            sim.send_sample()
            first = meter.read()
            assert first.watts == pytest.approx(4.0)
            assert first.energy_j is None
            assert meter.hello == Hello(1, "edgetally-sim")
            for kind in ("bad_crc", "bad_length", "unknown_type", "short_power"):
                sim.inject(kind)
            sim.inject("garbage")
            sim.send_sample(500)
            sim.send_sample(500)
            sim.send_sensor(1, 1, 21.5)
            r = meter.read()
            assert r.watts == pytest.approx(4.0)
            assert r.energy_j == pytest.approx(4.0)  # 1 s at 4 W from the MCU's counter
            assert meter.stats.bad_crc == 1
            assert meter.stats.bad_length == 2
            assert meter.stats.unknown_type == 1
            assert meter.sensors[1].value == pytest.approx(21.5)
            sim.inject("truncated")
            sim.send_sample(1000)
            assert meter.read().energy_j == pytest.approx(4.0)
        finally:
            meter.close()


def test_silent_line_is_an_error_naming_the_port() -> None:
    with SerialSimulator() as sim:
        meter = SerialPowerMeter(sim.port, timeout=0.2)
        sim.inject("bad_crc")
        with pytest.raises(BridgeError, match=r"no valid power frame .*\(1 bad frames"):
            meter.read()
        meter.close()


def test_not_a_serial_port(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="cannot open serial port"):
        SerialPowerMeter(str(tmp_path / "ttyNOPE"))
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(BridgeError, match="not a serial port"):
        SerialPowerMeter(str(f))


def test_mcu_gone_quiet_after_a_sample_is_an_error_not_a_hang() -> None:
    with SerialSimulator() as sim:
        meter = SerialPowerMeter(sim.port, timeout=0.2)
        sim.send_sample()
        meter.read()
        with pytest.raises(BridgeError, match="no new power frame"):
            meter.read()
        meter.close()


def test_reading_times_follow_the_mcu_clock() -> None:
    with SerialSimulator(watts=2.0) as sim:
        meter = SerialPowerMeter(sim.port, timeout=1.0)
        sim.send_sample()
        a = meter.read()
        sim.send_sample(250)
        sim.send_sample(250)
        b = meter.read()
        meter.close()
    assert (b.at - a.at).total_seconds() == pytest.approx(0.5)
    assert b.energy_j == pytest.approx(1.0)
