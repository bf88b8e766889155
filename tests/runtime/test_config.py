"""Device config files: validated once, frozen, errors point at the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgetally.runtime.config import load_config, parse_config
from edgetally.runtime.errors import ConfigError
from pydantic import ValidationError

GOOD = """\
site: shop-1
device: box-1
broker: mqtt://127.0.0.1:1883
outbox: outbox.db
bucket_seconds: 30
cameras:
  - id: door
    source: /dev/video0
    lines:
      - id: entrance
        points: [380, 100, 380, 576]
      - id: side
        points: [0, 300, 700, 300]
    zones:
      - id: till
        polygon: [[10, 10], [200, 10], [200, 200]]
  - id: back
    source: rtsp://cam/stream
    lines:
      - id: back-door
        points: [1, 2, 3, 4]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.site == "shop-1" and cfg.bucket_seconds == 30
    assert [c.id for c in cfg.cameras] == ["door", "back"]
    assert cfg.cameras[0].lines[1].points == (0.0, 300.0, 700.0, 300.0)
    assert cfg.cameras[0].zones[0].polygon[2] == (200.0, 200.0)
    assert cfg.cameras[0].roi is None
    with_roi = GOOD.replace(
        "    source: /dev/video0\n", "    source: /dev/video0\n    roi: [0, 50, 700, 576]\n"
    )
    assert load_config(write(tmp_path, with_roi)).cameras[0].roi == (0.0, 50.0, 700.0, 576.0)
    assert cfg.outbox == tmp_path / "outbox.db"  # relative to the file
    with pytest.raises(ValidationError):
        cfg.site = "other"  # frozen


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "points: [1, 2, 3, 4]",
            "points: [1, 2, 3]",
            "cameras[1].lines[0].points: expected 4 numbers",
        ),
        (
            "points: [0, 300, 700, 300]",
            "points: [0, 300, 700, x]",
            "cameras[0].lines[1].points: expected 4 numbers",
        ),
        ("bucket_seconds: 30", "bucket_secs: 30", "bucket_secs: unknown key"),
        (
            "        points: [380, 100, 380, 576]",
            "        points: [380, 100, 380, 576]\n        colour: red",
            "cameras[0].lines[0].colour: unknown key",
        ),
        (
            "[[10, 10], [200, 10], [200, 200]]",
            "[[10, 10], [200, 10]]",
            "cameras[0].zones[0].polygon: expected at least 3 points",
        ),
        ("site: shop-1", "site: shop 1", "site: invalid id"),
        ("device: box-1\n", "", "device: missing required key"),
        (
            "broker: mqtt://127.0.0.1:1883",
            "broker: http://x",
            "broker: invalid broker URL 'http://x'",
        ),
        ("bucket_seconds: 30", "bucket_seconds: 0", "bucket_seconds: Input should be greater"),
        ("id: back\n", "id: door\n", "camera ids must be unique; repeated: door"),
        ("id: side", "id: entrance", "line and zone ids must be unique"),
        (
            "    source: /dev/video0\n",
            "    source: /dev/video0\n    roi: [10, 10, 20]\n",
            "cameras[0].roi: expected 4 numbers [x1, y1, x2, y2], got 3",
        ),
        (
            "    source: /dev/video0\n",
            "    source: /dev/video0\n    roi: [300, 10, 20, 400]\n",
            "cameras[0].roi: give the top-left then the bottom-right corner",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_yaml_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 2, column"):
        load_config(write(tmp_path, "site: a\n  - : [\n"))


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_a_camera_without_lines_or_zones() -> None:
    with pytest.raises(ConfigError, match=r"cameras\[0\]: a camera needs at least one line"):
        parse_config({"site": "s", "device": "d", "cameras": [{"id": "c", "source": "x"}]})


def test_a_misspelt_key_is_named_with_the_key_it_meant(tmp_path: Path) -> None:
    # A required key misspelt: the misspelling is the problem, not a "missing" site.
    text = GOOD.replace("site: shop-1", "sitee: shop-1").replace("source: rtsp", "sorce: rtsp")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "sitee: unknown key (did you mean site?)" in message
    assert "cameras[1].sorce: unknown key (did you mean source?)" in message
    assert "missing required key" not in message  # said once, with the misspelt key
    assert "\n" not in message


def test_every_problem_is_listed_on_one_line(tmp_path: Path) -> None:
    text = (
        GOOD.replace("bucket_seconds: 30", "bucket_seconds: 0").replace(
            "points: [1, 2, 3, 4]", "points: [1, 2, 3]"
        )
        + "colour: red\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    problems = str(info.value).split(": ", 1)[1].split("; ")
    assert len(problems) == 3
    assert any(p.startswith("bucket_seconds: Input should be greater") for p in problems)
    assert any(p.startswith("cameras[1].lines[0].points: expected 4 numbers") for p in problems)
    assert "colour: unknown key" in problems  # nothing close to suggest
