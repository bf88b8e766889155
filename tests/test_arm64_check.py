"""How ``./run arm64-check`` judges an arm64 run against the x86 one (its comparison only:
the check itself needs root and an emulated Debian root, and runs before a release)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "arm64_check", REPO / "benchmarks" / "arm64_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(
    *frames: list[list[float]], counts: tuple[int, int] = (1, 0), tracks: int = 2
) -> dict[str, Any]:
    """A probe's output: frames of [x1, y1, x2, y2, score, class] boxes."""
    return {
        "frames": [list(f) for f in frames],
        "lines": [{"line": [0, 0, 1, 1], "in": counts[0], "out": counts[1]}],
        "tracks": tracks,
    }


PERSON = [100.0, 50.0, 140.0, 150.0, 0.8, 0]
OTHER = [300.0, 60.0, 330.0, 140.0, 0.7, 0]


def moved(box: list[float], dx: float, dscore: float = 0.0) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3], box[4] + dscore, box[5]]


def test_the_same_run_agrees(check: ModuleType) -> None:
    x86 = run([PERSON, OTHER], [PERSON])
    ok, line = check.compare(x86, copy.deepcopy(x86), 1.0, 0.01)
    assert ok
    assert line == (
        "3 boxes paired, max diff 0.00 px (tol 1), score 0.0000 (tol 0.01); "
        "line in/out 1/0, tracks 2"
    )


def test_boxes_within_the_tolerance_agree_and_beyond_it_differ(check: ModuleType) -> None:
    x86 = run([PERSON, OTHER])
    assert check.compare(x86, run([moved(PERSON, 0.6, 0.004), OTHER]), 1.0, 0.01)[0]
    ok, line = check.compare(x86, run([moved(PERSON, 1.5), OTHER]), 1.0, 0.01)
    assert not ok and "frame 0: a box moved 1.50 px (tolerance 1.00)" in line
    ok, line = check.compare(x86, run([moved(PERSON, 0.0, 0.02), OTHER]), 1.0, 0.01)
    assert not ok and "a score moved 0.0200 (tolerance 0.01)" in line


def test_a_full_integer_tolerance_grows_with_the_box(check: ModuleType) -> None:
    whole = [30.0, 80.0, 750.0, 480.0, 0.5, 0]  # 720 px wide: 1% is 7.2 px
    assert check.compare(run([whole]), run([moved(whole, 5.7)]), 3.0, 0.03, 0.01)[0]
    assert not check.compare(run([PERSON]), run([moved(PERSON, 5.7)]), 3.0, 0.03, 0.01)[0]


def test_only_weak_boxes_may_go_unpaired(check: ModuleType) -> None:
    weak = [40.0, 180.0, 52.0, 190.0, 0.48, 0]
    ok, line = check.compare(run([PERSON]), run([PERSON, weak]), 1.0, 0.01)
    assert ok and "1 weak boxes unpaired" in line
    ok, line = check.compare(run([PERSON, OTHER]), run([PERSON]), 1.0, 0.01)
    assert not ok and "frame 0: x86 box score 0.70 missing on arm64" in line
    # Another class in the same place is not a pair.
    ok, _ = check.compare(run([PERSON]), run([[*PERSON[:5], 1]]), 1.0, 0.01)
    assert not ok


def test_counts_and_tracks_must_be_the_same(check: ModuleType) -> None:
    ok, line = check.compare(run([PERSON]), run([PERSON], counts=(0, 0)), 1.0, 0.01)
    assert not ok and "line counts [(1, 0)] vs [(0, 0)]" in line
    ok, line = check.compare(run([PERSON]), run([PERSON], tracks=3), 1.0, 0.01)
    assert not ok and "tracks 2 vs 3" in line


def test_the_plan_uses_the_default_where_the_backend_runs_its_format(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "SHARED_MODELS", tmp_path / "absent")
    monkeypatch.setenv("EDGETALLY_MODEL_DIRS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = check.plan_models(["onnxruntime", "openvino", "litert"])
    default = check.default_model()
    assert plan["onnxruntime"][0] == plan["openvino"][0] == default == "yolox-nano"
    assert plan["litert"] == (
        "the default yolox-nano is onnx, which litert does not run; "
        "ssd-mobilenet-v1-coco-quant (ssd_mobilenet_v1_coco_quant.tflite) not in a model "
        "directory"
    )
