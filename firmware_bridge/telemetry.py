"""An energy bucket as the wire's power message (``.../power``), for the device's outbox."""

from __future__ import annotations

from edgetally.firmware_bridge.errors import BridgeError
from edgetally.firmware_bridge.power import EnergyBucket
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Epoch, Seq
from edgetally.models.wire import PowerReading as WirePowerReading
from pydantic import ValidationError


def to_wire(
    bucket: EnergyBucket, site: str, device: str, seq: int, epoch: str | None = None
) -> WirePowerReading:
    """The wire message for one closed bucket; ``measured`` is carried through unchanged."""
    try:
        return WirePowerReading(
            site=SiteId(site),
            device=DeviceId(device),
            seq=Seq(seq),
            epoch=None if epoch is None else Epoch(epoch),
            source=bucket.source,
            start=bucket.start,
            seconds=round(bucket.seconds),
            wh=bucket.wh,
            mean_w=bucket.watts,
            measured=bucket.measured,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BridgeError(
            f"power bucket does not fit the wire schema: {where}: {err['msg']}"
        ) from None
