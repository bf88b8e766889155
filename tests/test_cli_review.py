"""`edgetally review`: space-time strips of a line show who crossed and which way, from the
pixels alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgetally import main as cli

W, H = 200, 120


@pytest.fixture(scope="module")
def walker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sixty frames on grey: a dark 'person' 12x40 px walks right from x=20 to x=170."""
    path = tmp_path_factory.mktemp("walk") / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (W, H))
    for i in range(60):
        image = np.full((H, W, 3), 180, np.uint8)
        x = 20 + int(2.5 * i)
        image[60:100, x - 6 : x + 6] = 20
        writer.write(image)
    writer.release()
    return path


def dark_columns(strip: Any) -> Any:
    """Frame numbers (3 columns a frame) where the strip shows something dark (every
    channel: the frame markers are coloured)."""
    dark = (strip.max(axis=2) < 80).any(axis=0)
    return np.unique(np.flatnonzero(dark) // 3)


def test_strips_show_a_crossing_first_on_the_side_it_came_from(
    walker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "review"
    code = cli.run(
        [
            "review",
            str(walker),
            "--line",
            "100,20,100,110",
            "--out",
            str(out),
            "--offset",
            "15",
            "--extend",
            "0",
            "--at",
            "32",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "60 frames" in capsys.readouterr().out
    picture = cv2.imread(str(out / "strips-00000.png"))
    assert picture is not None
    # The two strips: 18 px header, 91 px of line (extend 0), 6 px gap, header, strip.
    upper = picture[18 : 18 + 91]
    lower = picture[18 + 91 + 6 + 18 : 18 + 91 + 6 + 18 + 91]
    first_upper, first_lower = dark_columns(upper)[0], dark_columns(lower)[0]
    # Moving right (in for a top-to-bottom line): at x=85 (out side) near frame 26, at
    # x=115 (in side) near frame 38.
    assert 23 <= first_upper <= 27 and 35 <= first_lower <= 39
    assert (out / "frames-00032.png").is_file()
    assert json.loads((out / "reference.json").read_text()) == {
        "line": [100, 20, 100, 110],
        "events": [],
    }


def test_a_line_outside_the_picture_is_one_error(
    walker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.run(["review", str(walker), "--line", "100,20,100,400", "--out", str(tmp_path)])
    assert code != 0
    assert "outside the 200x120 frame" in capsys.readouterr().err
