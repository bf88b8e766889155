"""Shared test fixtures: the ../shared data (skipped cleanly when absent) and a real
Mosquitto broker on loopback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from edgetally import ports
from edgetally.ports import free_port

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path.relative_to(SHARED.parent)}")
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()


@pytest.fixture
def vtest_avi() -> Path:
    if not VTEST.exists():
        pytest.skip("vtest.avi missing: install Debian's opencv-doc (./run install does)")
    return VTEST


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    if not ports.wait_for_port(port, timeout):
        raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Broker:
    """A Mosquitto process on loopback that a test may stop and start again."""

    port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def mosquitto_binary() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto missing: ./run install installs Debian's mosquitto")
    return exe


def write_mosquitto_config(path: Path, port: int, extra: str = "") -> Path:
    path.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 100000\n"
        f"{extra}"
    )
    return path


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A fresh Mosquitto on a free loopback port, anonymous access allowed."""
    port = free_port()
    broker = Broker(port=port, config=write_mosquitto_config(tmp_path / "mosquitto.conf", port))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
