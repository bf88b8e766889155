"""The cloud baseline: what streaming cameras to a data center would cost, for the hours
they stream (formulas, figures and sources: docs/energy.md).

For one camera over h hours:

- data uploaded V [GB] = (video + audio Mb/s) x h x 3600 / 8000;
- network, attributional: V x I_net [kWh/GB]; marginal: k [W per Mb/s] x Mb/s x h;
- cloud inference: fps x h x 3600 x J/frame x PUE;
- optional storage: V x retention days x 24 h x W/TB x replication x PUE;
- CO2e: network at a mix of the store's and the data center's grids (share configurable),
  inference and storage at the data center's grid; the attributional accounting at the
  grids' yearly averages, the marginal one at their marginal intensities where a source
  gives them (else the average, said so in the assumptions).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetally.fleet.energy.assumptions import (
    Assumption,
    EnergyAssumptions,
    EnergyError,
    GridTable,
    Intensity,
)

J_PER_WH = 3600.0


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera the edge device replaces: its stream if it went to the cloud. ``id``: the
    source name of its aggregates, when the config names it."""

    bitrate_mbps: float
    fps: float = 15.0
    audio: bool = True
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.bitrate_mbps > 0:
            raise EnergyError(f"camera bitrate must be positive, got {self.bitrate_mbps} Mb/s")
        if not self.fps > 0:
            raise EnergyError(f"camera frame rate must be positive, got {self.fps}")


@dataclass(frozen=True, slots=True)
class Baseline:
    """Cloud figures for some camera-hours (or a sum of them)."""

    data_gb: float
    network_wh_attributional: float
    network_wh_marginal: float
    cloud_inference_wh: float
    storage_wh: float
    network_gco2e_attributional: float
    network_gco2e_marginal: float
    cloud_inference_gco2e: float
    storage_gco2e: float
    cloud_inference_gco2e_marginal: float
    storage_gco2e_marginal: float

    @property
    def cloud_wh_attributional(self) -> float:
        return self.network_wh_attributional + self.cloud_inference_wh + self.storage_wh

    @property
    def cloud_wh_marginal(self) -> float:
        return self.network_wh_marginal + self.cloud_inference_wh + self.storage_wh

    @property
    def cloud_gco2e_attributional(self) -> float:
        return self.network_gco2e_attributional + self.cloud_inference_gco2e + self.storage_gco2e

    @property
    def cloud_gco2e_marginal(self) -> float:
        return (
            self.network_gco2e_marginal
            + self.cloud_inference_gco2e_marginal
            + self.storage_gco2e_marginal
        )

    def __add__(self, other: Baseline) -> Baseline:
        return Baseline(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))

    def as_json(self) -> dict[str, float]:
        return {
            "data_gb": self.data_gb,
            "network_wh_attributional": self.network_wh_attributional,
            "network_wh_marginal": self.network_wh_marginal,
            "cloud_inference_wh": self.cloud_inference_wh,
            "storage_wh": self.storage_wh,
            "cloud_wh_attributional": self.cloud_wh_attributional,
            "cloud_wh_marginal": self.cloud_wh_marginal,
            "cloud_gco2e_attributional": self.cloud_gco2e_attributional,
            "cloud_gco2e_marginal": self.cloud_gco2e_marginal,
        }


def _values(b: Baseline) -> tuple[float, ...]:
    return tuple(getattr(b, f) for f in Baseline.__dataclass_fields__)


ZERO = Baseline(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def network_mix(
    a: EnergyAssumptions, store: Intensity, cloud: Intensity, *, marginal: bool = False
) -> float:
    """gCO2e/kWh charged for network energy: a share at the store, the rest at the cloud."""
    share = a.network_store_share
    if marginal:
        return share * store.marginal + (1 - share) * cloud.marginal
    return share * store.gco2e_per_kwh + (1 - share) * cloud.gco2e_per_kwh


def stream_mbps(camera: CameraSpec, a: EnergyAssumptions) -> float:
    return camera.bitrate_mbps + (a.audio_mbps if camera.audio else 0.0)


def camera_hours(
    camera: CameraSpec, hours: float, store: Intensity, cloud: Intensity, a: EnergyAssumptions
) -> Baseline:
    """The cloud baseline of one camera streaming for ``hours`` (any length, >= 0)."""
    if not hours >= 0:
        raise EnergyError(f"camera hours must not be negative, got {hours}")
    mbps = stream_mbps(camera, a)
    data_gb = mbps * hours * 3600 / 8000
    net_attr = data_gb * a.network_kwh_per_gb * 1000
    net_marg = a.network_w_per_mbps * mbps * hours
    inference = camera.fps * hours * 3600 * a.cloud_j_per_frame * a.pue / J_PER_WH
    stored_tb = data_gb * a.storage_retention_days / 1000
    storage = stored_tb * 24 * a.storage_wh_per_tb_hour * a.storage_replication * a.pue
    mix = network_mix(a, store, cloud) / 1000  # g per Wh
    mix_marginal = network_mix(a, store, cloud, marginal=True) / 1000
    dc, dc_marginal = cloud.gco2e_per_kwh / 1000, cloud.marginal / 1000
    return Baseline(
        data_gb=data_gb,
        network_wh_attributional=net_attr,
        network_wh_marginal=net_marg,
        cloud_inference_wh=inference,
        storage_wh=storage,
        network_gco2e_attributional=net_attr * mix,
        network_gco2e_marginal=net_marg * mix_marginal,
        cloud_inference_gco2e=inference * dc,
        storage_gco2e=storage * dc,
        cloud_inference_gco2e_marginal=inference * dc_marginal,
        storage_gco2e_marginal=storage * dc_marginal,
    )


def camera_day(
    camera: CameraSpec, hours: float, store: Intensity, cloud: Intensity, a: EnergyAssumptions
) -> Baseline:
    """The cloud baseline of one camera streaming ``hours`` a day, for one day."""
    if not 0 < hours <= 24:
        raise EnergyError(f"hours per day must be in (0, 24], got {hours}")
    return camera_hours(camera, hours, store, cloud, a)


def baseline_assumptions(
    a: EnergyAssumptions, store: Intensity, cloud: Intensity
) -> list[Assumption]:
    """The named figures a baseline used, with units and sources."""
    out = [
        a.assumption("audio_mbps", "Mb/s per camera"),
        a.assumption("network_kwh_per_gb", "kWh/GB (attributional)"),
        a.assumption("network_w_per_mbps", "W per Mb/s (marginal)"),
        a.assumption("network_store_share", "fraction of network energy at the store's grid"),
        a.assumption("cloud_j_per_frame", "J/frame"),
        a.assumption("pue", "data-center PUE"),
        store.assumption("store"),
        cloud.assumption("cloud"),
        store.marginal_assumption("store"),
        cloud.marginal_assumption("cloud"),
    ]
    if a.storage_retention_days > 0:
        out += [
            a.assumption("storage_retention_days", "days"),
            a.assumption("storage_wh_per_tb_hour", "Wh per TB-hour"),
            a.assumption("storage_replication", "copies"),
        ]
    return out


def baseline_report(
    camera: CameraSpec,
    hours: float,
    store_region: str,
    cloud_region: str,
    a: EnergyAssumptions | None = None,
    grid: GridTable | None = None,
) -> dict[str, object]:
    """`edgetally energy baseline --json`: one camera-day, with its assumptions."""
    a = a or EnergyAssumptions()
    grid = grid or GridTable()
    store, cloud = grid.get(store_region), grid.get(cloud_region)
    result: dict[str, object] = {
        "store_region": store.code,
        "cloud_region": cloud.code,
        "bitrate_mbps": camera.bitrate_mbps,
        "fps": camera.fps,
        "hours": hours,
    }
    result.update(camera_day(camera, hours, store, cloud, a).as_json())
    result["assumptions"] = [x.as_json() for x in baseline_assumptions(a, store, cloud)]
    return result
