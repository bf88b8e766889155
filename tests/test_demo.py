"""`edgetally demo` ends by itself and the fleet stores what was published."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_json_summary(tmp_path: Path, vtest_avi: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--stores", "2", "--days", "3",
         "--seconds", "30", "--max-frames", "60", "--data-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["stores"] == 2
    assert summary["published"] > 2 * 3 * 20  # hourly buckets of two stores
    assert summary["stored"] == summary["published"]
    assert summary["dead_letters"] == 0
    assert summary["device"]["frames"] == 60 and summary["device"]["error"] is None
    sites = {row["site"] for row in summary["traffic"]}
    assert "demo-shop" in sites and len(sites) == 3
    assert (tmp_path / "fleet.duckdb").exists()


def test_demo_bad_source_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--source", str(tmp_path / "none.mp4")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("edgetally: error: demo video")
    assert "Traceback" not in out.stderr
