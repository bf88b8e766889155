"""`edgetally count`, `eval`, `snapshot` and `models` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    assert set(out) == {"source", "frames", "model", "backend", "fps", "lines", "zones"}
    assert out["zones"] == []  # no --zone
    assert out["model"] == "yolox-nano" and out["backend"] == "onnxruntime"  # the default
    assert out["frames"] == 71 and out["fps"] > 0
    assert out["lines"][0]["line"] == [320, 250, 320, 480]
    assert out["lines"][0]["in"] >= 3


VTEST_REFERENCES = sorted((REPO / "benchmarks" / "data" / "vtest").glob("*.json"))


@pytest.mark.slow
def test_the_default_model_counts_the_long_clip_right_event_by_event(vtest_avi: Path) -> None:
    """Eight lines of vtest.avi whose truth was found by eye, across and along the walkway
    and near the picture's border: count accuracy 0.95 and event F1 0.93 at least."""
    assert len(VTEST_REFERENCES) >= 8
    refs = [a for p in VTEST_REFERENCES for a in ("--reference", str(p))]
    out = run_json("eval", str(vtest_avi), *refs, "--no-gate", "--json")
    assert out["model"] == "yolox-nano" and out["tolerance_s"] == 1.0
    assert len(out["lines"]) == len(VTEST_REFERENCES)
    assert out["count_accuracy"] >= 0.95
    assert out["events"]["f1"] >= 0.93
    events = out["events"]
    assert events["tp"] + events["fn"] == sum(ln["true_in"] + ln["true_out"] for ln in out["lines"])
    assert events["tp"] + events["fp"] == sum(ln["in"] + ln["out"] for ln in out["lines"])


def test_count_events_round_trip_through_eval(tmp_path: Path) -> None:
    """What `count --events` writes is a reference `eval` reads: the same run scores 1.0, and
    a reference with one crossing moved out of tolerance scores one miss and one false."""
    seq = shared_path("data", "footfall", "tud_stadtmitte")
    events = tmp_path / "events.jsonl"
    lines = ["450,200,450,480", "320,200,320,480"]
    proc = edgetally(
        "count",
        str(seq),
        *[a for ln in lines for a in ("--line", ln)],
        "--events",
        str(events),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    counted = json.loads(proc.stdout)
    rows = [json.loads(r) for r in events.read_text().splitlines()]
    assert len(rows) == sum(ln["in"] + ln["out"] for ln in counted["lines"]) >= 3
    for row in rows:
        assert set(row) == {"t", "time", "frame", "line", "line_id", "dir", "track"}
        assert row["t"] == pytest.approx(row["frame"] / 25.0, abs=1e-3)  # 25 fps
        assert row["line"] in ([450, 200, 450, 480], [320, 200, 320, 480])
    assert f"wrote {events} ({len(rows)} crossings)" in proc.stderr
    # Every line needs a crossing in the reference to be scored: both lines have some here.
    assert {tuple(r["line"]) for r in rows} == {(450, 200, 450, 480), (320, 200, 320, 480)}
    out = run_json("eval", str(seq), "--reference", str(events), "--json")
    assert out["events"] == {
        "tp": len(rows),
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    assert out["count_accuracy"] == 1.0
    moved = [dict(r) for r in rows]
    moved[0]["t"] += 3.0
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_text("".join(json.dumps(r) + "\n" for r in moved))
    out = run_json("eval", str(seq), "--reference", str(shifted), "--json")
    assert (out["events"]["tp"], out["events"]["fp"], out["events"]["fn"]) == (len(rows) - 1, 1, 1)
    assert out["count_accuracy"] == 1.0  # net counts cannot see it
    wide = run_json("eval", str(seq), "--reference", str(shifted), "--tolerance-s", "3.5", "--json")
    assert wide["events"]["f1"] == 1.0


def test_zone_visits_on_a_real_clip_round_trip_through_eval(tmp_path: Path) -> None:
    """A zone on TUD-Campus: count reports its visits, occupancy and dwell, --events writes
    an entry and an exit per visit beside the crossings, and eval scores that file as a
    zone reference 1.0, and one entry moved out of tolerance as one miss and one false."""
    seq = shared_path("data", "footfall", "tud_campus")
    zone, line = "200,250,440,250,440,480,200,480", "320,250,320,480"
    events = tmp_path / "events.jsonl"
    proc = edgetally(
        "count", str(seq), "--zone", zone, "--line", line, "--events", str(events), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    (counted,) = json.loads(proc.stdout)["zones"]
    assert counted["zone"] == [200, 250, 440, 250, 440, 480, 200, 480]
    assert counted["visits"] >= 3  # people walk through the middle of the picture
    assert 0 < counted["occupancy_mean"] <= counted["occupancy_max"]
    assert 0 <= counted["dwell_p50_s"] <= counted["dwell_p90_s"] <= 71 / 25
    rows = [json.loads(r) for r in events.read_text().splitlines()]
    zone_rows = [r for r in rows if "zone" in r]
    assert [r["event"] for r in zone_rows].count("enter") == counted["visits"]
    assert [r["event"] for r in zone_rows].count("exit") == counted["visits"]
    assert all(
        set(r) == {"t", "time", "frame", "line", "line_id", "dir", "track"}
        for r in rows
        if "line" in r
    )
    out = run_json(
        "eval", str(seq), "--reference", str(events), "--zone-reference", str(events), "--json"
    )
    assert out["zone_visits"] == {
        "tp": counted["visits"],
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    assert out["zone_count_accuracy"] == 1.0 and out["events"]["f1"] == 1.0
    assert out["zones"][0]["true_dwell_p50_s"] == counted["dwell_p50_s"]
    first = next(i for i, r in enumerate(rows) if r.get("event") == "enter")
    rows[first] = {**rows[first], "t": rows[first]["t"] + 5.0}
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_json("eval", str(seq), "--zone-reference", str(shifted), "--json")
    visits = out["zone_visits"]
    assert (visits["tp"], visits["fp"], visits["fn"]) == (counted["visits"] - 1, 1, 1)
    assert out["zone_count_accuracy"] == 1.0  # the counts cannot see it


def test_eval_scores_events_against_mot_truth() -> None:
    seq = shared_path("data", "footfall", "tud_campus")
    out = run_json("eval", str(seq), "--line", "320,250,320,480", "--json")
    (line,) = out["lines"]
    assert (line["true_in"], line["true_out"]) == (4, 1)
    assert line["tp"] + line["fn"] == 5 and line["tp"] + line["fp"] == line["in"] + line["out"]
    assert {"tp", "fp", "fn", "precision", "recall", "f1"} <= set(out["events"])
    proc = edgetally("eval", str(seq), "--line", "320,250,320,480")
    assert proc.returncode == 0, proc.stderr
    assert "events (within 1 s, same direction)" in proc.stdout


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
        (["eval", "{seq}"], ["--line", "--reference"]),
        (["eval", "{seq}", "--reference", "{junk}"], ["reference", "junk.avi"]),
        (["eval", "{seq}", "--reference", "missing.json"], ["reference missing.json"]),
        (["eval", "{seq}", "--reference", "{ref}", "--line", "1,1,5,5"], ["not both"]),
        (["eval", "{seq}", "--reference", "{ref}", "--tolerance-s", "-1"], ["--tolerance-s"]),
        (["count", "{seq}", "--line", "1,1,5,5", "--events", "{junkdir}"], ["is a folder"]),
        (["count", "{seq}", "--line", "1,1,5,5", "--events", "nodir/e.jsonl"], ["does not exist"]),
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
    ref = tmp_path / "ref.json"
    ref.write_text('{"line": [1, 1, 5, 5], "events": [{"t": 0.5, "dir": "in"}]}')
    values = {"junk": junk, "seq": seq, "bad_model": bad_model, "junkdir": junkdir, "ref": ref}
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
    proc = edgetally("models", "verify", "ssd-mobilenet-v1-coco-quant", models=False)
    assert proc.returncode == 1 and "missing" in proc.stdout
    # The two Apache-2.0 detectors ship inside the package: found with no model directory.
    for shipped in ("yolox-nano", "lwpd"):
        proc = edgetally("models", "verify", shipped, models=False)
        assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    ("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")]
)
def test_an_interrupted_count_prints_and_writes_what_it_has(
    vtest_avi: Path, tmp_path: Path, sig: int, code: int, name: str
) -> None:
    """SIGTERM (systemd, containers) and Ctrl-C end a count between frames: the counts so far
    are printed, the events file is written with a last row marking it partial, and eval
    reads that file as it is."""
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "count",
            str(vtest_avi),
            "--no-gate",
            "--line",
            "560,180,560,430",
            "--events",
            str(events),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt it well into the clip: the whole count takes some 16 CPU-seconds here (two
    # inference threads), loading the model about one; CPU time, not wall time, so a busy
    # machine waits as long as it needs.
    while proc.poll() is None and cpu_seconds(proc.pid) < 5.0:
        time.sleep(0.1)
    assert proc.poll() is None, "the count ended before it could be interrupted"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    report = json.loads(out)
    assert report["partial"] is True and 0 < report["frames"] < 795
    assert f"interrupted ({name}) after {report['frames']} frames" in err
    rows = [json.loads(r) for r in events.read_text().splitlines()]
    assert rows[-1] == {"partial": True, "frames": report["frames"]}
    crossings = [r for r in rows if "line" in r]
    assert len(crossings) == report["lines"][0]["in"] + report["lines"][0]["out"]
    assert "marked partial" in err
