"""`edgetally demo`: the fleet stores what was published; the device's counts are the same
on every run; a non-interactive run ends by itself, a run in a terminal keeps serving the
dashboard until Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_demo_json_summary(tmp_path: Path, vtest_avi: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "demo",
            "--stores",
            "2",
            "--days",
            "3",
            "--max-frames",
            "60",
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["stores"] == 2
    assert summary["api"].startswith("http://127.0.0.1:")
    assert summary["published"] > 2 * 3 * 20 * 2  # two aggregates an hour, two stores
    assert summary["stored"] == summary["published"]
    assert summary["dead_letters"] == 0
    assert summary["device"]["frames"] == 60 and summary["device"]["error"] is None
    sites = {row["site"] for row in summary["traffic"]}
    assert "demo-shop" in sites and len(sites) == 3
    for row in summary["traffic"]:  # the stores' days: in and out close, not the same
        if row["site"] != "demo-shop":
            assert row["days"] == 3 and row["in"] != row["out"]
            assert abs(row["in"] - row["out"]) < 0.05 * row["in"]
    assert (tmp_path / "fleet.duckdb").exists()
    # Power: one reading per store hour (half the stores' aggregates: a line and a zone an
    # hour) plus the real device's wall-clock buckets (as many as its power sampler closed:
    # not tied to how many file buckets it counted), stored as published.
    power = summary["power"]
    store_aggregates = summary["published"] - summary["device"]["aggregates"]
    device_power = summary["device"]["power"]["buckets"]
    assert device_power >= 1 and store_aggregates % 2 == 0
    assert power["published"] == store_aggregates // 2 + device_power
    assert power["stored"] == power["published"]
    energy = summary["energy"]
    by_device = {d["device"]: d for d in energy["devices"]}
    assert set(by_device) == {"demo-cam", "store-01", "store-02"}
    for name in ("store-01", "store-02"):  # simulated: from a profile, never "measured"
        assert by_device[name]["edge"]["label"] == "estimated"
        assert by_device[name]["edge"]["measured"] is False
    cam = by_device["demo-cam"]["edge"]
    assert cam["measured"] is (cam["label"] == "measured")
    assert summary["device"]["power"]["measured"] is cam["measured"]
    assert energy["measured"] is all(d["edge"]["measured"] for d in by_device.values())
    for d in by_device.values():
        assert d["edge"]["wh"] > 0 and d["cloud"]["cloud_wh_attributional"] > 0
        assert d["ratio"]["energy_attributional"] == pytest.approx(
            d["cloud"]["cloud_wh_attributional"] / d["edge"]["wh"], rel=1e-6
        )


def test_demo_on_the_embedded_broker_loses_nothing(tmp_path: Path, vtest_avi: Path) -> None:
    """Without Mosquitto the demo runs on amqtt: the same QoS 1 path, every message stored."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "demo",
            "--embedded-broker",
            "--stores",
            "1",
            "--days",
            "2",
            "--max-frames",
            "30",
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["broker"]["kind"] == "amqtt"
    assert summary["published"] > 2 * 20 and summary["stored"] == summary["published"]
    assert summary["power"]["stored"] == summary["power"]["published"] > 0
    assert summary["dead_letters"] == 0


def test_demo_keeps_serving_until_interrupted(tmp_path: Path, vtest_avi: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "demo",
            "--stores",
            "1",
            "--days",
            "1",
            "--max-frames",
            "20",
            "--data-dir",
            str(tmp_path),
            "--power-source",
            "estimate",
            "--json",
            "--keep-serving",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.readline())
        api = summary["api"]
        assert api.startswith("http://127.0.0.1:")
        # The run is over, the fleet still answers, from the same store.
        devices = httpx.get(f"{api}/api/v1/devices", timeout=30).json()["rows"]
        assert {d["device"] for d in devices} == {"demo-cam", "store-01"}
        energy = httpx.get(f"{api}/api/v1/energy", timeout=30).json()
        assert {d["device"] for d in energy["devices"]} == {"demo-cam", "store-01"}
        assert energy["measured"] is False  # --power-source estimate: nothing measured
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_counts_the_whole_clip_the_same_on_every_run(tmp_path: Path, vtest_avi: Path) -> None:
    """Two runs at once (each slows the other down): both count every frame of the clip
    and print the same line. Nothing in the count depends on how fast the machine is."""
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgetally",
                "demo",
                "--stores",
                "1",
                "--days",
                "1",
                "--power-source",
                "estimate",
                "--data-dir",
                str(tmp_path / f"run{i}"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    lines = []
    for proc in runs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        assert "serving the dashboard" not in out + err  # not a terminal: it ended by itself
        found = [ln for ln in out.splitlines() if ln.startswith("device demo-cam: line")]
        assert len(found) == 1, out
        lines.append(found[0])
    assert lines[0] == lines[1]
    assert re.fullmatch(r"device demo-cam: line entrance in \d+, out \d+ \(795 frames\)", lines[0])


def _read_until(fd: int, text: str, seen: bytearray) -> str:
    """Read a terminal's output until ``text`` appears (or the program ends)."""
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], 600)  # a guard against hanging
        assert ready, f"no {text!r} in: {seen.decode(errors='replace')}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed, the program ended
            chunk = b""
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def test_demo_in_a_terminal_serves_until_ctrl_c(tmp_path: Path, vtest_avi: Path) -> None:
    """In a terminal (a pty here) the demo keeps the dashboard up and says so in one line;
    Ctrl-C typed into the terminal ends it cleanly (exit 0, broker and fleet stopped)."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # the pty is the demo's terminal, as in a shell
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "demo",
            "--stores",
            "1",
            "--days",
            "1",
            "--max-frames",
            "20",
            "--data-dir",
            str(tmp_path),
            "--power-source",
            "estimate",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    seen = bytearray()
    try:
        out = _read_until(master, "Ctrl-C ends", seen)
        serving = re.findall(r"^serving the dashboard at (\S+); Ctrl-C ends\r?$", out, re.M)
        assert len(serving) == 1, out
        page = httpx.get(serving[0], timeout=30)
        assert page.status_code == 200 and "charts.js" in page.text
        api = serving[0].removesuffix("/dashboard/")
        devices = httpx.get(f"{api}/api/v1/devices", timeout=30).json()["rows"]
        assert {d["device"] for d in devices} == {"demo-cam", "store-01"}
        os.write(master, b"\x03")  # Ctrl-C
        assert proc.wait(timeout=120) == 0
        out = _read_until(master, "\0never", seen)
        assert "Traceback" not in out and "interrupted" not in out
        with pytest.raises(httpx.TransportError):
            httpx.get(serving[0], timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_demo_bad_source_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "demo", "--source", str(tmp_path / "none.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("edgetally: error: demo video")
    assert "Traceback" not in out.stderr


def test_sigterm_ends_the_demo_and_its_broker(tmp_path: Path, vtest_avi: Path) -> None:
    """What systemd or a container runtime sends: the demo stops as on Ctrl-C, and the
    Mosquitto it started does not outlive it."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("needs Debian's mosquitto (the demo's own broker)")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetally",
            "demo",
            "--stores",
            "1",
            "--days",
            "1",
            "--max-frames",
            "20",
            "--data-dir",
            str(tmp_path),
            "--power-source",
            "estimate",
            "--json",
            "--keep-serving",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.readline())
        assert summary["broker"]["kind"] == "mosquitto"
        brokers = [pid for pid in children(proc.pid) if "mosquitto" in cmdline(pid)]
        assert brokers, "the demo's Mosquitto is not its child"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        time.sleep(0.5)
        assert [
            pid for pid in brokers if Path(f"/proc/{pid}").exists() and "mosquitto" in cmdline(pid)
        ] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
