"""`edgetally count --zone` and `eval --zone-reference`: a person walking through a zone on
synthetic frames, counted by a stand-in detector that sees the painted person (in process,
no model and no development data needed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edgetally import main as cli

from tests.runtime.footfall_support import BlobDetector, painted, write_frames

ZONE = "100,150,200,150,200,230,100,230"
ZONE_POINTS = [100, 150, 200, 150, 200, 230, 100, 230]
LINE = "250,100,250,239"
# One person walking right along y 200, 5 px a frame, 25 frames per second: inside the zone
# (x 100..200) from frame 14 to frame 34, across the line (x 250) at about frame 44.
WALK = [(30 + 5 * i, 200) for i in range(55)]
ENTRY_T, EXIT_T = 14 / 25, 34 / 25
ZONE_KEYS = {
    "zone",
    "zone_id",
    "visits",
    "occupancy_mean",
    "occupancy_max",
    "dwell_p50_s",
    "dwell_p90_s",
}
SCORE_KEYS = {"tp", "fp", "fn", "precision", "recall", "f1"}


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_frames(
        tmp_path_factory.mktemp("walk") / "frames", [painted([foot]) for foot in WALK]
    )


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The command line in this process, its detector the stand-in."""
    monkeypatch.setattr(
        "edgetally.runtime.counting.detectors.load_detector", lambda *args, **kwargs: BlobDetector()
    )

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_OneVoice"]:
        root.removeHandler(handler)


def run_json(run_cli: Any, *args: str) -> Any:
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_count_reports_the_zone_in_json_and_for_a_person(run_cli: Any, walk: Path) -> None:
    out = run_json(run_cli, "count", str(walk), "--zone", ZONE, "--line", LINE)
    assert list(out) == ["source", "frames", "model", "backend", "fps", "lines", "zones"]
    assert out["lines"] == [{"line": [250, 100, 250, 239], "in": 1, "out": 0}]
    (zone,) = out["zones"]
    assert set(zone) == ZONE_KEYS
    assert zone == {
        "zone": ZONE_POINTS,  # as typed
        "zone_id": "zone1",
        "visits": 1,
        "occupancy_mean": round(21 / 55, 4),  # inside on 21 of the 55 frames
        "occupancy_max": 1,
        "dwell_p50_s": 0.8,  # frame 14 to frame 34
        "dwell_p90_s": 0.8,
    }
    code, text, err = run_cli("count", str(walk), "--zone", ZONE)
    assert code == 0, err
    assert (
        f"  zone {ZONE}: 1 visit, occupancy mean 0.38, max 1; dwell p50 0.8 s, p90 0.8 s"
    ) in text.splitlines()
    # Without a zone the list is there, empty; with two, each is reported on its own.
    assert run_json(run_cli, "count", str(walk), "--line", LINE)["zones"] == []
    two = run_json(run_cli, "count", str(walk), "--zone", ZONE, "--zone", "0,0,20,0,20,20")
    assert [(z["zone_id"], z["visits"]) for z in two["zones"]] == [("zone1", 1), ("zone2", 0)]


def test_count_events_has_enter_and_exit_rows_beside_the_crossings(
    run_cli: Any, walk: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(
        "count", str(walk), "--zone", ZONE, "--line", LINE, "--events", str(events)
    )
    assert code == 0, err
    assert f"wrote {events} (1 crossings, 2 zone entries and exits)" in err
    rows = [json.loads(r) for r in events.read_text().splitlines()]
    assert [r.get("event", r.get("dir")) for r in rows] == ["enter", "exit", "in"]  # by frame
    enter, leave, crossing = rows
    assert set(crossing) == {"t", "time", "frame", "line", "line_id", "dir", "track"}
    assert set(enter) == {"t", "time", "frame", "zone", "zone_id", "event", "track"}
    assert set(leave) == set(enter) | {"dwell_s"}
    assert (enter["t"], enter["frame"], enter["zone"], enter["zone_id"]) == (
        ENTRY_T,
        14,
        ZONE_POINTS,
        "zone1",
    )
    # The exit is the last frame seen inside: exit minus entry is the dwell.
    assert (leave["t"], leave["frame"], leave["dwell_s"]) == (EXIT_T, 34, 0.8)
    assert enter["track"] == leave["track"] == crossing["track"]
    # A person still inside when the source ends exits on the last frame.
    short = write_frames(tmp_path / "short", [painted([foot]) for foot in WALK[:25]])
    code, _, err = run_cli("count", str(short), "--zone", ZONE, "--events", str(events))
    assert code == 0, err
    rows = [json.loads(r) for r in events.read_text().splitlines()]
    assert [(r["event"], r["frame"], r.get("dwell_s")) for r in rows] == [
        ("enter", 14, None),
        ("exit", 24, 0.4),
    ]


def test_eval_scores_zone_visits_against_a_reference(
    run_cli: Any, walk: Path, tmp_path: Path
) -> None:
    ref = tmp_path / "visits.json"
    ref.write_text(json.dumps({"zone": ZONE_POINTS, "visits": [{"t": 0.6, "exit_t": 1.4}]}))
    out = run_json(run_cli, "eval", str(walk), "--zone-reference", str(ref))
    (zone,) = out["zones"]
    assert zone["true_visits"] == 1 and zone["visits"] == 1
    assert (zone["tp"], zone["fp"], zone["fn"], zone["f1"]) == (1, 0, 0, 1.0)
    assert zone["visit_count_accuracy"] == 1.0
    assert zone["true_dwell_p50_s"] == zone["true_dwell_p90_s"] == 0.8
    assert out["zone_visits"] == {
        "tp": 1,
        "fp": 0,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
    assert out["zone_count_accuracy"] == 1.0
    assert out["lines"] == [] and out["tolerance_s"] == 1.0
    # The true entry 3 s later: a miss and a false visit, though the counts agree.
    ref.write_text(json.dumps({"zone": ZONE_POINTS, "visits": [{"t": 3.6}]}))
    out = run_json(run_cli, "eval", str(walk), "--zone-reference", str(ref))
    assert {k: out["zones"][0][k] for k in SCORE_KEYS} == {
        "tp": 0,
        "fp": 1,
        "fn": 1,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert out["zone_visits"]["f1"] == 0.0 and out["zone_count_accuracy"] == 1.0
    wide = run_json(
        run_cli, "eval", str(walk), "--zone-reference", str(ref), "--tolerance-s", "3.5"
    )
    assert wide["zone_visits"]["tp"] == 1
    code, text, err = run_cli("eval", str(walk), "--zone-reference", str(ref))
    assert code == 0, err
    assert "(truth 1 visit; visits F1 0.000)" in text
    assert (
        "  zone visits (entries within 1 s): 0 matched, 1 false, 1 missed; precision "
        "0.000, recall 0.000, F1 0.000; visit count accuracy 1.000"
    ) in text.splitlines()
    assert "events (within" not in text  # no line: no line scores


def test_what_count_events_writes_is_a_reference_for_lines_and_zones(
    run_cli: Any, walk: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    code, _, err = run_cli(
        "count", str(walk), "--zone", ZONE, "--line", LINE, "--events", str(events)
    )
    assert code == 0, err
    out = run_json(
        run_cli, "eval", str(walk), "--reference", str(events), "--zone-reference", str(events)
    )
    assert out["events"]["f1"] == 1.0 and out["lines"][0]["true_in"] == 1
    assert out["zone_visits"]["f1"] == 1.0
    (zone,) = out["zones"]
    assert zone["true_dwell_p50_s"] == zone["dwell_p50_s"] == 0.8
    # eval --zone reports a zone beside scored lines, unscored.
    out = run_json(run_cli, "eval", str(walk), "--reference", str(events), "--zone", ZONE)
    assert set(out["zones"][0]) == ZONE_KEYS and "zone_visits" not in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--zone-reference", "{lines}"],
            ["zone reference", '"zone" and "visits"', "go to --reference"],
        ),
        (["--zone-reference", "missing.json"], ["zone reference missing.json"]),
        (["--zone-reference", "{visits}", "--zone", ZONE], ["not both"]),
        (["--zone", ZONE], ["--line", "--reference", "--zone-reference"]),
        (["--zone-reference", "{visits}", "--zone-reference", "{visits}"], ["given twice"]),
    ],
)
def test_bad_zone_input_is_one_line(
    run_cli: Any, walk: Path, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    lines = tmp_path / "lines.json"
    lines.write_text('{"line": [1, 1, 5, 5], "events": []}')
    visits = tmp_path / "visits.json"
    visits.write_text(json.dumps({"zone": ZONE_POINTS, "visits": []}))
    values = {"lines": lines, "visits": visits}
    code, out, err = run_cli("eval", str(walk), *[a.format(**values) for a in args])
    assert code != 0 and out == ""
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("edgetally: error: ")
    for word in words:
        assert word in line
