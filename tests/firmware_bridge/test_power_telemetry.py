"""Energy buckets become the wire's power messages, measured flag intact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import EnergyIntegrator, PowerReading
from edgetally.firmware_bridge.telemetry import to_wire
from edgetally.models.wire import PowerReading as WirePowerReading
from edgetally.models.wire import from_json, to_json

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("measured", [True, False])
def test_bucket_to_wire_round_trip(measured: bool) -> None:
    integ = EnergyIntegrator("rapl" if measured else "estimate", measured, bucket_seconds=60)
    closed = []
    for s in range(0, 121):
        closed += integ.add(PowerReading(T0 + timedelta(seconds=s), 12.0))
    msg = to_wire(closed[0], "shop1", "box1", 7)
    assert msg.measured is measured and msg.seconds == 60
    assert msg.wh == pytest.approx(0.2) and msg.mean_w == pytest.approx(12.0)
    assert from_json(WirePowerReading, to_json(msg)) == msg


def test_bad_ids_are_a_bridge_error() -> None:
    integ = EnergyIntegrator("rapl", True)
    integ.add(PowerReading(T0, 1.0))
    integ.add(PowerReading(T0 + timedelta(seconds=5), 1.0))
    bucket = integ.flush()
    assert bucket is not None
    with pytest.raises(BridgeError, match="wire schema"):
        to_wire(bucket, "bad site!", "box1", 1)
