"""The cloud baseline formulas against the worked example of docs/energy.md (from the
project's energy notes), the grid regions and the marginal assumption, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgetally.fleet.energy.assumptions import (
    METHODOLOGY,
    EnergyAssumptions,
    EnergyError,
    GridOverride,
    GridTable,
    load_config,
)
from edgetally.fleet.energy.baseline import CameraSpec, baseline_report, camera_day

from tests.json_support import objs

# docs/energy.md, "Worked examples": 1080p15, 12 h, France store, US-Virginia cloud.
EXAMPLE = {
    "data_gb": 16.4,
    "network_wh_attributional": 491,
    "network_wh_marginal": 2,  # "~2 Wh"
    "cloud_inference_wh": 50,
    "cloud_wh_attributional": 541,
    "cloud_wh_marginal": 51,
    "cloud_gco2e_attributional": 117,
    "cloud_gco2e_marginal": 19,
}


def example() -> dict[str, object]:
    return baseline_report(CameraSpec(3.0, 15), 12, "FR", "US-Virginia")


@pytest.mark.parametrize("key", [k for k in EXAMPLE if k != "network_wh_marginal"])
def test_worked_example_within_two_percent(key: str) -> None:
    assert example()[key] == pytest.approx(EXAMPLE[key], rel=0.02)


def test_worked_example_exact_formulas() -> None:
    r = example()
    v = (3.0 + 0.032) * 12 * 3600 / 8000
    assert r["data_gb"] == pytest.approx(v)
    assert r["network_wh_attributional"] == pytest.approx(v * 0.03 * 1000)
    assert r["network_wh_marginal"] == pytest.approx(0.05 * 3.032 * 12)  # 1.82, "~2"
    assert r["cloud_inference_wh"] == pytest.approx(15 * 12 * 3600 * 0.24 * 1.15 / 3600)
    mix = (33 + 370) / 2
    cloud_wh = r["cloud_inference_wh"]
    assert isinstance(cloud_wh, float)
    expected = v * 30 * mix / 1000 + cloud_wh * 370 / 1000
    assert r["cloud_gco2e_attributional"] == pytest.approx(expected)
    # the edge side of the example: 10 W for 12 h in France
    assert pytest.approx(4.5, rel=0.01) == 541 / 120
    assert pytest.approx(4, rel=0.02) == 120 * 33 / 1000


def test_every_result_names_its_assumptions() -> None:
    used = {a["name"]: a for a in objs(example()["assumptions"])}
    for name in (
        "network_kwh_per_gb",
        "network_w_per_mbps",
        "cloud_j_per_frame",
        "pue",
        "grid_store",
        "grid_cloud",
    ):
        assert used[name]["source"], name
    assert used["grid_store"]["value"] == 33 and "FR" in used["grid_store"]["source"]
    assert used["grid_cloud"]["value"] == 370


def test_storage_is_optional_and_counted_when_configured() -> None:
    grid = GridTable()
    fr, va = grid.get("FR"), grid.get("US-VA")
    cam = CameraSpec(3.0)
    assert camera_day(cam, 12, fr, va, EnergyAssumptions()).storage_wh == 0
    stored = camera_day(cam, 12, fr, va, EnergyAssumptions(storage_retention_days=30))
    v = 3.032 * 12 * 3600 / 8000
    assert stored.storage_wh == pytest.approx(v * 30 / 1000 * 24 * 0.65 * 3 * 1.15)
    assert (
        stored.cloud_wh_attributional
        > camera_day(cam, 12, fr, va, EnergyAssumptions()).cloud_wh_attributional
    )


def test_config_overrides_assumptions_and_grid(tmp_path: Path) -> None:
    cfg = tmp_path / "energy.yaml"
    cfg.write_text(
        "assumptions:\n  pue: 1.56\n"
        "grid:\n  FR:\n    gco2e_per_kwh: 21.7\n    source: RTE production-based\n    year: 2024\n"
    )
    c = load_config(cfg)
    r = baseline_report(CameraSpec(3.0), 12, "FR", "US-VA", c.assumptions, GridTable(c.grid))
    used = {a["name"]: a for a in objs(r["assumptions"])}
    assert used["pue"]["value"] == 1.56 and "configured" in used["pue"]["source"]
    assert used["grid_store"]["value"] == 21.7 and "RTE" in used["grid_store"]["source"]
    assert r["cloud_inference_wh"] == pytest.approx(43.2 * 1.56)


def test_bad_config_and_regions_are_clear_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "energy.yaml"
    cfg.write_text("assumptions:\n  pue: 0.5\n")
    with pytest.raises(EnergyError, match=r"assumptions\.pue"):
        load_config(cfg)
    cfg.write_text("assumptoins: {}\n")
    with pytest.raises(EnergyError, match="assumptoins"):
        load_config(cfg)
    with pytest.raises(EnergyError, match="unknown grid region 'Atlantis'"):
        GridTable().get("Atlantis")
    with pytest.raises(EnergyError, match="bitrate"):
        CameraSpec(0)


def test_bundled_grid_file_has_source_and_year_for_every_region() -> None:
    grid = GridTable()
    assert {"FR", "DE", "GB", "US", "US-VA", "US-OR", "IN", "CN", "NZ", "WORLD"} <= set(grid.codes)
    for region in grid.file.regions:
        assert region.source and 2015 <= region.year <= 2030
        assert region.low is None or region.low <= region.gco2e_per_kwh <= (region.high or 1e9)


REPO = Path(__file__).resolve().parents[3]


def test_new_zealand_for_the_demo_stores_and_the_marginal_assumption() -> None:
    nz = GridTable().get("Auckland")
    assert (nz.code, nz.gco2e_per_kwh, nz.year) == ("NZ", 101.1, 2024)
    assert "Ministry for the Environment" in nz.source
    r = baseline_report(CameraSpec(3.0), 12, "NZ", "NZ")
    used = {a["name"]: a for a in objs(r["assumptions"])}
    # no sourced marginal intensity: the average stands in for it, and the answer says so
    assert used["grid_store_marginal"]["value"] == 101.1
    assert "an assumption" in used["grid_store_marginal"]["source"]
    assert r["cloud_gco2e_marginal"] == pytest.approx(
        (float(r["network_wh_marginal"]) + float(r["cloud_inference_wh"])) * 101.1 / 1000  # type: ignore[arg-type]  # JSON numbers
    )
    # a configured marginal intensity drives the marginal accounting only
    grid = GridTable(
        {
            "NZ": GridOverride(
                gco2e_per_kwh=101.1,
                source="MfE",
                marginal_gco2e_per_kwh=500,
                marginal_source="mine",
            )
        }
    )
    m = baseline_report(CameraSpec(3.0), 12, "NZ", "NZ", grid=grid)
    assert m["cloud_gco2e_attributional"] == pytest.approx(r["cloud_gco2e_attributional"])
    assert m["cloud_gco2e_marginal"] == pytest.approx(
        float(r["cloud_gco2e_marginal"]) * 500 / 101.1  # type: ignore[arg-type]  # JSON numbers
    )
    marginal = {a["name"]: a for a in objs(m["assumptions"])}["grid_cloud_marginal"]
    assert marginal["value"] == 500 and marginal["source"] == "NZ: mine"


def test_the_methodology_page_has_every_region_and_the_code_cites_it() -> None:
    page = (REPO / METHODOLOGY).read_text()
    for region in GridTable().file.regions:
        row = next(x for x in page.splitlines() if x.startswith(f"| {region.code} "))
        assert f"| {region.gco2e_per_kwh:g} |" in row, row
    for key in EnergyAssumptions.model_fields:
        if key != "sources":
            assert f"`{key}`" in page, key
    for module in ("assumptions", "baseline", "ledger", "report", "series"):
        assert METHODOLOGY in (REPO / "fleet" / "energy" / f"{module}.py").read_text(), module
    assert "ENERGY.md" not in "".join(
        p.read_text() for p in (REPO / "fleet" / "energy").glob("*.py")
    )


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, check=False
    )


def test_cli_baseline_json_reproduces_the_example() -> None:
    done = edgetally(
        "energy",
        "baseline",
        "--bitrate-mbps",
        "3",
        "--hours",
        "12",
        "--store-region",
        "FR",
        "--cloud-region",
        "US-Virginia",
        "--fps",
        "15",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key, value in EXAMPLE.items():
        if key != "network_wh_marginal":
            assert out[key] == pytest.approx(value, rel=0.02), key
    bad = edgetally(
        "energy", "baseline", "--store-region", "FR", "--cloud-region", "Mars", "--json"
    )
    assert bad.returncode == 1 and bad.stderr.startswith("edgetally: error: unknown grid region")
    assert "Traceback" not in bad.stderr
