"""What a person reads from the command line: progress on a terminal (and nothing without
one or with --json), errors and warnings in one voice, numbers rounded, real metavars."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import typer
from edgetally import main as cli
from edgetally.ports import free_port
from edgetally.progress import is_terminal, progress
from rich.file_proxy import FileProxy

from tests.conftest import Broker

LINE = "40,10,40,110"  # inside the 160x120 clip below


def edgetally(
    *args: str, env: dict[str, str] | None = None, tty_stderr: bool = False
) -> tuple[int, str, str]:
    """Run the command in a fresh process; with ``tty_stderr`` its stderr is a terminal."""
    full_env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", **(env or {})}
    full_env.pop("FORCE_COLOR", None)
    full_env.pop("TTY_COMPATIBLE", None)
    cmd = [sys.executable, "-m", "edgetally", *args]
    if not tty_stderr:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr
    master, slave = pty.openpty()
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=full_env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # read while it runs: a full terminal buffer would block it
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    assert child.stdout is not None
    out = child.stdout.read().decode()
    code = child.wait(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("edgetally: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve frames, 160x120, nobody in them."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Thirty seconds of a 440 Hz tone at 16 kHz."""
    import soundfile

    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    t = np.arange(30 * 16000) / 16000
    soundfile.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


# ------------------------------------------------------------------ progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_nothing_with_json_or_without_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    with progress(quiet=True, stream=FakeTerminal()) as told:
        assert told is None
    with progress(stream=io.StringIO()) as told:
        assert told is None
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(FakeTerminal())


def test_progress_draws_bars_while_work_is_unfinished(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    screen = FakeTerminal()
    with progress("frames", stream=screen) as told:
        assert told is not None
        told("clip.avi", 1, 3)
        assert isinstance(sys.stderr, FileProxy)  # what is printed meanwhile goes above
        told("clip.avi", 3, 3)
        # every bar done: the display is gone, so a library's own output (NNCF's bars
        # while quantizing) goes straight to stderr until the next bar starts
        assert not isinstance(sys.stderr, FileProxy)
        told("gate", 1, 2)
        assert isinstance(sys.stderr, FileProxy)
    assert not isinstance(sys.stderr, FileProxy)  # closed with the block, finished or not
    drawn = screen.getvalue()
    assert "clip.avi" in drawn and "3/3" in drawn and "frames" in drawn and "gate" in drawn


def test_count_shows_progress_on_a_terminal_and_not_with_json(clip: Path) -> None:
    code, out, err = edgetally("count", str(clip), "--line", LINE, tty_stderr=True)
    assert code == 0, err
    assert "clip.avi" in err and "/12" in err and "frames" in err  # the bar, on stderr
    assert "\x1b" not in out and out.startswith("clip.avi: 12 frames")  # stdout stays clean
    code, out, err = edgetally("count", str(clip), "--line", LINE, "--json", tty_stderr=True)
    assert code == 0, err
    assert "/12" not in err
    json.loads(out)
    code, out, err = edgetally("count", str(clip), "--line", LINE)  # stderr not a terminal
    assert code == 0 and err == ""


def test_audio_analyze_shows_seconds_on_a_terminal(tone: Path) -> None:
    args = ("audio", "analyze", str(tone), "--no-vad", "--bucket-seconds", "10")
    code, out, err = edgetally(*args, tty_stderr=True)
    assert code == 0, err
    assert "tone.wav" in err and "/30" in err
    assert "\x1b" not in out and len(out.splitlines()) == 4  # header and three buckets
    code, out, err = edgetally(*args, "--json", tty_stderr=True)
    assert code == 0 and "/30" not in err and len(json.loads(out)) == 3


# ------------------------------------------------------------------ one voice


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def run(*args: str) -> tuple[int, str, str]:
        code = cli.run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_OneVoice"]:
        root.removeHandler(handler)


def test_a_missing_option_is_one_line_naming_what_to_pass(run_cli: Any) -> None:
    code, _, err = run_cli("energy", "baseline", "--cloud-region", "FR")
    assert code == 2
    line = one_error_line(err)
    assert "missing option --store-region REGION" in line
    assert "DE" in line and "US-VA" in line and "WORLD" in line  # the regions to choose from
    code, _, err = run_cli("snapshot", "clip.avi")
    assert code == 2
    assert one_error_line(err) == (
        "edgetally: error: missing option --out FILE: PNG file to write "
        "(see edgetally snapshot --help)"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["count"], ["missing argument SOURCE"]),
        (["count", "x.avi", "--stride", "two"], ["invalid value for '--stride'", "integer"]),
        (["count", "x.avi", "--bogus"], ["no such option: --bogus"]),
        (["cuont"], ["no such command 'cuont'", "count"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(run_cli: Any, args: list[str], words: list[str]) -> None:
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    line = one_error_line(err)
    for word in words:
        assert word in line
    assert "╭" not in err and "Usage:" not in err


def test_warnings_are_one_line_and_verbose_keeps_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = logging.getLogger("edgetally.runtime.counting.sources")
    try:
        cli.configure_logging(verbose=False)
        log.info("not shown")
        log.warning("camera0: cannot open, retrying in %.1f s", 0.5)
        assert capsys.readouterr().err == (
            "edgetally: warning: camera0: cannot open, retrying in 0.5 s\n"
        )
        cli.configure_logging(verbose=True)
        log.info("opened")
        err = capsys.readouterr().err
        assert err == "INFO edgetally.runtime.counting.sources: opened\n"
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if type(h).__name__ == "_OneVoice"]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)


def test_a_broken_video_is_our_line_only(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypisom" + bytes(4000))  # an MP4 header, no moov atom
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    for args in (
        ["snapshot", str(broken), "--out", str(tmp_path / "f.png")],
        ["count", str(broken), "--line", LINE],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "edgetally", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 1
        assert "cannot open video" in one_error_line(proc.stderr)
        assert "moov" not in proc.stderr


# ------------------------------------------------------------------ what is printed


def test_energy_baseline_rounds_for_people_and_keeps_json_exact(run_cli: Any) -> None:
    args = ("energy", "baseline", "--store-region", "DE", "--cloud-region", "US")
    code, out, _ = run_cli(*args)
    assert code == 0
    assert not re.search(r"\d\.\d{5,}", out), out  # no 16.372799999999998
    assert "16.4 GB/day" in out
    code, out, _ = run_cli(*args, "--json")
    assert json.loads(out)["data_gb"] == pytest.approx(16.3728)
    assert json.loads(out)["data_gb"] != round(json.loads(out)["data_gb"], 1)


def test_count_json_keeps_the_lines_typed_and_annotate_says_where(
    clip: Path, tmp_path: Path
) -> None:
    video = tmp_path / "annotated.avi"
    code, out, err = edgetally(
        "count",
        str(clip),
        "--line",
        LINE,
        "--line",
        "20.5,10,20.5,110",
        "--annotate",
        str(video),
        "--json",
    )
    assert code == 0, err
    assert '"line": [40, 10, 40, 110]' in out
    assert [ln["line"] for ln in json.loads(out)["lines"]] == [
        [40, 10, 40, 110],
        [20.5, 10, 20.5, 110],
    ]
    assert err.strip() == f"wrote {video} (12 frames, annotated)" and video.is_file()


def test_snapshot_past_the_end_names_the_frame_count(clip: Path, tmp_path: Path) -> None:
    code, _, err = edgetally(
        "snapshot", str(clip), "--frame", "40", "--out", str(tmp_path / "f.png")
    )
    assert code == 1
    line = one_error_line(err)
    assert "has 12 frames" in line and "0 to 11" in line
    code, out, _ = edgetally(
        "snapshot", str(clip), "--frame", "11", "--out", str(tmp_path / "f.png")
    )
    assert code == 0 and "frame 11" in out


def _commands(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def test_help_shows_metavars_not_python_types(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(cli.build_app())
    paths = list(_commands(root, []))
    assert len(paths) > 40
    for path in paths:
        code, out, _ = run_cli(*path, "--help")
        assert code == 0
        types = re.findall(r"<(?:bool|str|int|float|path|list\[[a-z]+\])>", out)
        assert not types, f"edgetally {' '.join(path)} --help shows {types}"
    _, out, _ = run_cli("count", "--help")
    assert "X1,Y1,X2,Y2" in out and re.search(r"--stride\s+N\b", out)
    assert re.search(r"--json\s+Print", out)  # a flag shows no metavar


def test_models_show_prints_no_none_and_list_says_how_to_get_a_file(tmp_path: Path) -> None:
    env = {"EDGETALLY_MODEL_DIRS": str(tmp_path), "HOME": str(tmp_path)}
    for name in ("yolox-nano", "pedestrian-ssdlite"):
        code, out, _ = edgetally("models", "show", name, env=env)
        assert code == 0 and "None" not in out
    code, out, _ = edgetally("models", "show", "ssd-mobilenet-v1-coco-quant", env=env)
    assert f"put ssd_mobilenet_v1_coco_quant.tflite in one of {tmp_path}" in out
    code, out, _ = edgetally("models", "list", env=env)
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "FORMAT", "FAMILY", "LICENSE", "FILE"]
    assert any(
        "ssd-mobilenet-v1-coco-quant" in ln and "missing (ssd_mobilenet_v1_coco_quant.tflite)" in ln
        for ln in lines
    )
    assert not any("yolox-nano" in ln and "missing" in ln for ln in lines)  # shipped
    assert "a missing file goes in a model directory" in lines[-1] and str(tmp_path) in lines[-1]


def _device_run(clip: Path, outbox: Path, broker: str, *extra: str) -> tuple[int, str, str]:
    return edgetally(
        "device",
        "run",
        str(clip),
        "--line",
        LINE,
        "--site",
        "s1",
        "--device-id",
        "d1",
        "--broker",
        broker,
        "--outbox",
        str(outbox),
        "--bucket-seconds",
        "1",
        *extra,
    )


def test_device_run_says_what_was_published_and_what_waits(clip: Path, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    closed = f"mqtt://127.0.0.1:{free_port()}"
    code, out, err = _device_run(clip, outbox, closed, "--drain-timeout", "0.5")
    assert code == 3
    last = out.splitlines()[-1]
    assert last.startswith("0 messages published to ") and "still wait in the outbox" in last
    assert "edgetally: warning:" in err


@pytest.mark.slow
def test_device_run_counts_what_the_broker_took(
    clip: Path, tmp_path: Path, mosquitto: Broker
) -> None:
    code, out, err = _device_run(clip, tmp_path / "outbox.db", mosquitto.url, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["published"] >= data["aggregates"] > 0 and data["waiting"] == 0
    code, out, err = _device_run(clip, tmp_path / "outbox.db", mosquitto.url)
    assert code == 0, err
    assert re.search(r"^\d+ messages published to .*, none waits in the outbox", out, re.M)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_device_run_stopped_by_a_signal_says_so_in_its_exit_code(
    clip: Path, tmp_path: Path, mosquitto: Broker, sig: int, code: int
) -> None:
    """SIGTERM (systemd) or Ctrl-C stops a device run after its current frame: the open
    bucket is sent, the summary printed, and the exit code is the signal's, as a shell
    reports it (not 0, which would say the file was read to its end)."""
    images = tmp_path / "frames"
    images.mkdir()
    for i in range(600):  # a minute at --realtime's 10 fps: time to stop it midway
        cv2.imwrite(str(images / f"{i:04d}.png"), np.zeros((120, 160, 3), np.uint8))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "device",
            "run",
            str(images),
            "--line",
            LINE,
            "--site",
            "s1",
            "--device-id",
            "d1",
            "--broker",
            mosquitto.url,
            "--outbox",
            str(tmp_path / "outbox.db"),
            "--bucket-seconds",
            "1",
            "--realtime",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outbox = tmp_path / "outbox.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not outbox.exists():
        time.sleep(0.2)
    time.sleep(3)  # a few buckets in
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    report = json.loads(out)
    assert 0 < report["aggregates"] < 60  # some buckets of the minute, not all of them
    assert report["waiting"] == 0  # the open bucket went out before the exit


def test_version_prints_the_installed_version(run_cli: Any) -> None:
    from importlib.metadata import version

    code, out, err = run_cli("--version")
    assert code == 0 and err == ""
    assert out == f"edgetally {version('edgetally')}\n"
