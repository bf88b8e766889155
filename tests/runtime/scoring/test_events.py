"""Crossing events matched one by one, and the reference files that hold the truth."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from edgetally.runtime.counting.analytics import LineSpec
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.scoring.matching import Event, EventScore, match_events
from edgetally.runtime.scoring.mot import GtBox, true_counts, true_events
from edgetally.runtime.scoring.references import (
    Visit,
    read_reference,
    read_references,
    read_zone_reference,
    read_zone_references,
)


def ev(*pairs: tuple[float, str]) -> list[Event]:
    return [Event(t, d) for t, d in pairs]  # type: ignore[arg-type]  # literal directions


def test_errors_that_cancel_in_counts_show_in_events() -> None:
    truth = ev((1.0, "in"), (5.0, "in"))
    counted = ev((1.2, "in"), (9.0, "in"))  # one found, one missed, one false: counts agree
    score = match_events(counted, truth, 1.0)
    assert (score.tp, score.fp, score.fn) == (1, 1, 1)
    assert score.precision == 0.5 and score.recall == 0.5 and score.f1 == 0.5


def test_direction_and_tolerance_must_both_hold() -> None:
    truth = ev((2.0, "in"))
    assert match_events(ev((2.0, "out")), truth, 1.0).tp == 0
    assert match_events(ev((3.0, "in")), truth, 1.0).tp == 1  # exactly at the tolerance
    assert match_events(ev((3.01, "in")), truth, 1.0).tp == 0
    assert match_events(ev((3.01, "in")), truth, 1.5).tp == 1


def test_each_event_matches_at_most_once() -> None:
    truth = ev((1.0, "in"), (1.1, "in"))
    assert match_events(ev((1.05, "in")), truth, 1.0) == EventScore(1, 0, 1)
    assert match_events(ev((1.0, "in"), (1.0, "in"), (1.0, "in")), truth, 1.0) == EventScore(
        2, 1, 0
    )


def _best_matching(counted: list[Event], truth: list[Event], tol: float) -> int:
    """The largest matching by brute force, for small cases."""
    best = 0
    for k in range(min(len(counted), len(truth)), 0, -1):
        for picked in itertools.permutations(range(len(counted)), k):
            for chosen in itertools.combinations(range(len(truth)), k):
                if all(
                    counted[c].dir == truth[t].dir and abs(counted[c].t - truth[t].t) <= tol
                    for c, t in zip(picked, chosen, strict=True)
                ):
                    return k
    return best


def test_the_greedy_matching_is_the_largest_one() -> None:
    rng = random.Random(7)
    for _ in range(300):
        truth = ev(
            *[
                (round(rng.uniform(0, 6), 1), rng.choice(["in", "out"]))
                for _ in range(rng.randint(0, 4))
            ]
        )
        counted = ev(
            *[
                (round(rng.uniform(0, 6), 1), rng.choice(["in", "out"]))
                for _ in range(rng.randint(0, 4))
            ]
        )
        score = match_events(counted, truth, 1.0)
        assert score.tp == _best_matching(counted, truth, 1.0), (counted, truth)
        assert score.tp + score.fp == len(counted) and score.tp + score.fn == len(truth)


def test_empty_cases_score_as_perfect_or_as_nothing() -> None:
    assert match_events([], [], 1.0).f1 == 1.0
    only_false = match_events(ev((1.0, "in")), [], 1.0)
    assert only_false.precision == 0.0 and only_false.recall == 0.0 and only_false.f1 == 0.0
    with pytest.raises(ConfigError, match="--tolerance-s"):
        match_events([], [], -1.0)


def test_truth_from_mot_boxes_has_times_and_directions() -> None:
    line = LineSpec.parse("100,0,100,200")
    boxes = [
        GtBox(1, 1, 80, 50, 10, 50),  # foot at x 85
        GtBox(2, 1, 90, 50, 10, 50),  # x 95
        GtBox(3, 1, 100, 50, 10, 50),  # x 105: crossed toward +x, "in", at frame 3
        GtBox(11, 2, 120, 50, 10, 50),
        GtBox(12, 2, 80, 50, 10, 50),  # back to the left: "out" at frame 12
        GtBox(12, 3, 120, 250, 10, 50),  # below the segment: never crosses it
        GtBox(13, 3, 80, 250, 10, 50),
    ]
    events = true_events(boxes, line, fps=10.0)
    assert events == [Event(0.2, "in"), Event(1.1, "out")]
    assert true_counts(boxes, line) == (1, 1)


def test_a_reference_file_as_the_issue_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(
        json.dumps(
            {
                "line": [200, 140, 200, 300],
                "events": [{"t": 20.7, "dir": "out"}, {"t": 18.4, "dir": "in"}],
            }
        )
    )
    (ref,) = read_reference(path)
    assert ref.line == (200, 140, 200, 300) and ref.text == "200,140,200,300"
    assert ref.events == (Event(18.4, "in"), Event(20.7, "out"))  # in time order
    assert ref.counts() == (1, 1)


def test_count_events_lines_are_a_reference_grouped_by_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        {"t": 1.5, "line": [1, 1, 5, 5], "line_id": "line1", "dir": "in", "track": 3},
        {"t": 0.5, "line": [9, 9, 9, 20], "line_id": "line2", "dir": "out", "track": 4},
        {"t": 0.7, "line": [1, 1, 5, 5], "line_id": "line1", "dir": "out", "track": 5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refs = read_reference(path)
    assert [r.text for r in refs] == ["1,1,5,5", "9,9,9,20"]
    assert refs[0].events == (Event(0.7, "out"), Event(1.5, "in"))
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(rows[0]) + "\n")
    assert read_reference(single)[0].events == (Event(1.5, "in"),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", "no lines"),
        ('{"line": [1, 2, 3], "events": []}', "four numbers"),
        ('{"line": [1, 2, 3, 4], "events": {}}', "must be a list"),
        ('{"line": [1, 2, 3, 4], "events": [{"t": -1, "dir": "in"}]}', "event 1"),
        ('{"line": [1, 2, 3, 4], "events": [{"t": 1, "dir": "up"}]}', '"in" or "out"'),
        ('{"events": []}', '"line" and "events"'),
    ],
)
def test_a_bad_reference_names_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "ref.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"reference {path}") as info:
        read_reference(path)
    assert words in str(info.value)


def test_the_same_line_twice_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for p in (a, b):
        p.write_text('{"line": [1, 2, 3, 4], "events": []}')
    with pytest.raises(ConfigError, match="given twice"):
        read_references([a, b])
    with pytest.raises(ConfigError, match=r"missing\.json"):
        read_references([tmp_path / "missing.json"])


def test_the_vtest_references_are_well_formed() -> None:
    folder = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "vtest"
    refs = read_references(sorted(folder.glob("*.json")))
    assert len(refs) >= 5
    for ref in refs:
        assert ref.events and all(0 <= e.t <= 79.5 for e in ref.events)  # 795 frames at 10 fps


SQUARE = [100, 150, 200, 150, 200, 230, 100, 230]


def zone_row(
    t: float, event: str, track: int | None, zone: list[int] = SQUARE
) -> dict[str, object]:
    """A zone row as ``count --events`` writes it."""
    row: dict[str, object] = {
        "t": t,
        "frame": round(t * 25),
        "zone": zone,
        "zone_id": "zone1",
        "event": event,
    }
    if track is not None:
        row["track"] = track
    return row


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_zone_reference_as_the_readme_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "visits.json"
    path.write_text(
        json.dumps(
            {
                "zone": SQUARE,
                "visits": [{"t": 9.5, "exit_t": 12.0}, {"t": 1.5}, {"t": 3, "exit_t": None}],
            }
        )
    )
    (ref,) = read_zone_reference(path)
    assert ref.zone == tuple(float(v) for v in SQUARE)
    assert ref.text == "100,150,200,150,200,230,100,230"
    assert ref.visits == (Visit(1.5), Visit(3.0), Visit(9.5, 12.0))  # in time order
    assert ref.entries() == [Event(1.5, "in"), Event(3.0, "in"), Event(9.5, "in")]
    assert ref.dwells() == [2.5]


def test_count_events_zone_rows_are_a_zone_reference(tmp_path: Path) -> None:
    other = [10, 10, 50, 10, 50, 50]
    rows = [
        {"t": 0.2, "line": [1, 1, 5, 5], "line_id": "line1", "dir": "in", "track": 3},
        zone_row(0.5, "enter", 7),
        zone_row(0.6, "enter", 8),
        zone_row(1.0, "exit", 8),
        zone_row(2.0, "enter", None),  # added by hand: no track, so no exit
        zone_row(2.5, "exit", 7),
        zone_row(0.1, "enter", 7, other),
        zone_row(4.0, "exit", 9),  # an exit whose entry was deleted by hand: ignored
    ]
    refs = read_zone_reference(write_rows(tmp_path / "events.jsonl", rows))
    assert [r.zone for r in refs] == [tuple(map(float, SQUARE)), tuple(map(float, other))]
    assert refs[0].visits == (Visit(0.5, 2.5), Visit(0.6, 1.0), Visit(2.0))
    assert refs[1].visits == (Visit(0.1),)
    single = write_rows(tmp_path / "one.jsonl", [rows[1]])
    assert read_zone_reference(single)[0].visits == (Visit(0.5),)


def test_a_crossing_reader_skips_the_zone_rows(tmp_path: Path) -> None:
    rows = [
        zone_row(0.5, "enter", 7),
        {"t": 1.5, "line": [1, 1, 5, 5], "line_id": "line1", "dir": "in", "track": 3},
        {**zone_row(2.5, "exit", 7), "dwell_s": 2.0},
    ]
    (ref,) = read_reference(write_rows(tmp_path / "events.jsonl", rows))
    assert ref.events == (Event(1.5, "in"),)
    for name, only in (("zones.jsonl", [rows[0], rows[2]]), ("one.jsonl", [rows[0]])):
        with pytest.raises(ConfigError, match="no crossings in it"):
            read_reference(write_rows(tmp_path / name, only))
    with pytest.raises(ConfigError, match="no zone entries in it"):
        read_zone_reference(write_rows(tmp_path / "lines.jsonl", [rows[1]]))
    visits = tmp_path / "visits.json"
    visits.write_text(json.dumps({"zone": SQUARE, "visits": []}))
    with pytest.raises(ConfigError, match="--zone-reference"):
        read_reference(visits)
    crossings = tmp_path / "crossings.json"
    crossings.write_text('{"line": [1, 2, 3, 4], "events": []}')
    with pytest.raises(ConfigError, match="go to --reference"):
        read_zone_reference(crossings)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[]", "no zones"),
        ('{"zone": [1, 2, 3, 4], "visits": []}', "at least 3 points"),
        ('{"zone": [1, 2, 3, 4, 5], "visits": []}', "at least 3 points"),
        ('{"zone": [1, 2, 3, 4, 5, "x"], "visits": []}', "at least 3 points"),
        ('{"zone": [0, 0, 9, 0, 9, 9], "visits": {}}', "must be a list"),
        ('{"zone": [0, 0, 9, 0, 9, 9], "visits": [1.5]}', "visit 1"),
        ('{"zone": [0, 0, 9, 0, 9, 9], "visits": [{"t": -1}]}', '"t" must be seconds'),
        ('{"zone": [0, 0, 9, 0, 9, 9], "visits": [{"t": 5, "exit_t": 4}]}', "before its entry"),
        ('{"zone": [0, 0, 9, 0, 9, 9]}', '"zone" and "visits"'),
        ('{"t": 1, "zone": [0, 0, 9, 0, 9, 9], "event": "in"}\n{"t": 2}', '"enter"'),
        ('{"t": "x", "zone": [0, 0, 9, 0, 9, 9], "event": "enter"}\n\n', '"t"'),
    ],
)
def test_a_bad_zone_reference_names_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "visits.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"zone reference {path}") as info:
        read_zone_reference(path)
    assert words in str(info.value)


def test_the_same_zone_twice_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for p in (a, b):
        p.write_text('{"zone": [0, 0, 9, 0, 9, 9], "visits": []}')
    with pytest.raises(ConfigError, match="given twice"):
        read_zone_references([a, b])
    with pytest.raises(ConfigError, match=r"zone reference .*missing\.json"):
        read_zone_references([tmp_path / "missing.json"])
