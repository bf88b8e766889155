"""`edgetally count`, `eval`, `snapshot` and `models` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.conftest import REPO, shared_path

FOOTFALL_TABLE = [
    # sequence, line, true in, true out (../shared/data/README.md)
    ("tud_campus", "320,250,320,480", 4, 1),
    ("tud_stadtmitte", "450,200,450,480", 2, 4),
    ("tud_stadtmitte", "320,200,320,480", 1, 1),
]
BUILT_IN = ["pedestrian-ssdlite", "yolox-nano", "lwpd", "ssd-mobilenet-v1-coco-quant"]


def edgetally(*args: str, models: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if models and (REPO.parent / "shared" / "models").is_dir():
        env["EDGETALLY_MODEL_DIRS"] = str(REPO.parent / "shared" / "models")
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def run_json(*args: str) -> Any:
    proc = edgetally(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", BUILT_IN)
def test_eval_scores_both_sequences_with_every_built_in_model(model: str) -> None:
    shared_path("models")
    for seq in ("tud_campus", "tud_stadtmitte"):
        rows = [r for r in FOOTFALL_TABLE if r[0] == seq]
        args = [a for r in rows for a in ("--line", r[1])]
        seq_dir = shared_path("data", "footfall", seq)
        out = run_json("eval", str(seq_dir), *args, "--model", model, "--json")
        assert out["model"] == model
        assert out["frames"] == {"tud_campus": 71, "tud_stadtmitte": 179}[seq]
        assert [(ln["true_in"], ln["true_out"]) for ln in out["lines"]] == [
            (r[2], r[3]) for r in rows
        ]
        error = sum(
            abs(ln["in"] - ln["true_in"]) + abs(ln["out"] - ln["true_out"]) for ln in out["lines"]
        )
        truth = sum(ln["true_in"] + ln["true_out"] for ln in out["lines"])
        assert out["count_accuracy"] == pytest.approx(1 - error / truth, abs=1e-4)
        # These short, occluded clips are hard: every model still gets most crossings.
        assert out["count_accuracy"] >= 0.6


def test_count_prints_exactly_the_documented_json() -> None:
    seq = shared_path("data", "footfall", "tud_campus")
    out = run_json("count", str(seq), "--line", "320,250,320,480", "--json")
    assert set(out) == {"source", "frames", "model", "backend", "fps", "lines"}
    assert out["model"] == "pedestrian-ssdlite" and out["backend"] == "openvino"
    assert out["frames"] == 71 and out["fps"] > 0
    assert out["lines"][0]["line"] == [320, 250, 320, 480]
    assert out["lines"][0]["in"] >= 3


@pytest.mark.slow
def test_the_long_clip_is_counted_right_with_yolox_nano(vtest_avi: Path) -> None:
    shared_path("models")
    reference = json.loads((REPO / "benchmarks" / "data" / "vtest_lines.json").read_text())
    args = [a for ln in reference["lines"] for a in ("--line", ",".join(map(str, ln["line"])))]
    out = run_json("count", str(vtest_avi), *args, "--model", "yolox-nano", "--json")
    error = truth = 0
    for got, want in zip(out["lines"], reference["lines"], strict=True):
        error += abs(got["in"] - want["true_in"]) + abs(got["out"] - want["true_out"])
        truth += want["true_in"] + want["true_out"]
    assert 1 - error / truth >= 0.90


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["count", "missing.mp4", "--line", "1,1,5,5"], ["source not found", "missing.mp4"]),
        (["count", "{junk}", "--line", "1,1,5,5"], ["cannot", "junk.avi"]),
        (["count", "{seq}", "--line", "1,1,5,5", "--model", "nope"], ["unknown model", "nope"]),
        (["count", "{seq}", "--line", "1,1,5,5", "--model", "{bad_model}"], ["--family"]),
        (
            ["count", "{seq}", "--line", "1,1,5,5", "--model", "{bad_model}", "--family", "yolox"],
            ["corrupt model file bad.onnx"],
        ),
        (["count", "{seq}", "--line", "0,0,2000,10"], ["outside", "640x480"]),
        (["count", "{seq}", "--line", "1,2,3"], ["four numbers"]),
        (["count", "{seq}"], ["--line"]),
        (["eval", "{junkdir}", "--line", "1,1,5,5"], ["not a MOT sequence"]),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    args: list[str], words: list[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF" + b"\0" * 2000)
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"not a model")
    junkdir = tmp_path / "dir"
    junkdir.mkdir()
    seq = REPO.parent / "shared" / "data" / "footfall" / "tud_campus"
    if not seq.exists():
        seq = tmp_path / "frames"
        seq.mkdir()
        cv2.imwrite(str(seq / "0.png"), __import__("numpy").zeros((480, 640, 3), "uint8"))
    values = {"junk": junk, "seq": seq, "bad_model": bad_model, "junkdir": junkdir}
    proc = edgetally(*[a.format(**values) for a in args])
    assert_one_line_error(proc, *words)


def test_annotate_writes_a_video_and_snapshot_a_png(tmp_path: Path) -> None:
    seq = shared_path("data", "footfall", "tud_campus")
    video = tmp_path / "out.mp4"
    proc = edgetally(
        "count",
        str(seq),
        "--line",
        "320,250,320,480",
        "--annotate",
        str(video),
        "--max-frames",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    cap.release()
    png = tmp_path / "frame.png"
    proc = edgetally(
        "snapshot", str(seq), "--out", str(png), "--frame", "10", "--line", "320,250,320,480"
    )
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(png))
    assert image is not None and image.shape == (480, 640, 3)


def test_models_verify_and_list() -> None:
    shared_path("models")
    rows = run_json("models", "verify", "--json")
    assert {r["name"]: r["status"] for r in rows} == dict.fromkeys(BUILT_IN, "ok")
    listed = run_json("models", "list", "--json")
    assert [r["name"] for r in listed] == BUILT_IN
    proc = edgetally("models", "verify", "yolox-nano", models=False)
    assert proc.returncode == 1 and "missing" in proc.stdout
