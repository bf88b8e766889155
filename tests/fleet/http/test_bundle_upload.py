"""Bundle uploads go to disk as they arrive, never whole into memory, and one larger than
the fleet takes is refused without leaving a file behind."""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import (
    BundleTarget,
    create_bundle,
    generate_keypair,
    load_private_key,
)
from edgetally.ports import free_port

from tests.runtime.updates.updater_support import make_bundle

pytestmark = pytest.mark.slow

MIB = 1 << 20


class Fleet:
    def __init__(self, root: Path, limit: int) -> None:
        self.keys = generate_keypair(root / "keys")
        self.state = root / "fleet"
        self.uploads = root / "uploads"
        self.uploads.mkdir()
        tokens = root / "tokens.json"
        self.headers = {"Authorization": f"Bearer {add_token(tokens, 'otto', 'operator')}"}
        self.service = RolloutService(
            self.state,
            load_private_key(self.keys[0]),
            publish=lambda _t, _p: None,
            devices=lambda: [],
            bundle_url=lambda sha: f"http://fleet/bundles/{sha}",
        )
        self.app = create_rollout_app(
            self.service, TokenStore.load(tokens), upload_dir=self.uploads, max_bundle_bytes=limit
        )
        self.url = ""

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.uploads))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path, limit=40 * MIB)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(f.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    f.url = f"http://127.0.0.1:{port}"
    yield f
    server.should_exit = True
    thread.join(timeout=10)


def _chunks(path: Path, size: int = 64 * 1024) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _big_bundle(fleet: Fleet, tmp: Path, mib: int) -> Path:
    model = tmp / "big.onnx"
    model.write_bytes(os.urandom(mib * MIB))
    out = tmp / "big.bundle"
    create_bundle(
        [model],
        private_key=load_private_key(fleet.keys[0]),
        out=out,
        name="big",
        version="7",
        targets=[BundleTarget.parse("onnxruntime:fp32:sim")],
    )
    return out


def test_a_large_upload_is_streamed_to_disk(fleet: Fleet, tmp_path: Path) -> None:
    bundle = _big_bundle(fleet, tmp_path, 32)
    tracemalloc.start()
    try:
        r = httpx.put(
            fleet.url + "/bundles", content=_chunks(bundle), headers=fleet.headers, timeout=120
        )
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "big" and r.json()["size"] == bundle.stat().st_size
    # the process (client and server) never held more than a few MiB of the 32 MiB
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert fleet.leftovers() == []
    got = httpx.get(f"{fleet.url}/bundles/{r.json()['sha256']}", headers=fleet.headers)
    assert got.content == bundle.read_bytes()


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(fleet: Fleet, tmp_path: Path) -> None:
    def endless() -> Iterator[bytes]:  # no Content-Length: cut off as it passes the limit
        block = b"x" * MIB
        for _ in range(200):
            yield block

    try:
        r = httpx.put(fleet.url + "/bundles", content=endless(), headers=fleet.headers)
        assert r.status_code == 413 and "--max-bundle-mb" in r.json()["detail"]
    except httpx.WriteError:
        pass  # the server answered and closed while the body was still being sent
    # refused on what it declares, before a byte of the body is sent
    host, port = fleet.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"PUT /bundles HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {fleet.headers['Authorization']}\r\n"
            f"Content-Length: {41 * MIB}\r\n\r\n"
        )
        sock.sendall(head.encode())
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 413 Request Entity Too Large", status
    assert fleet.leftovers() == []
    small = make_bundle(tmp_path, fleet.keys[0], "small")
    ok = httpx.put(fleet.url + "/bundles", content=small.read_bytes(), headers=fleet.headers)
    assert ok.status_code == 200, ok.text
    other_key = generate_keypair(tmp_path / "other")[0]
    stranger = make_bundle(tmp_path / "other", other_key, "stranger")
    bad = httpx.put(fleet.url + "/bundles", content=_chunks(stranger), headers=fleet.headers)
    assert bad.status_code == 422 and "refused" in bad.json()["detail"]
    assert fleet.leftovers() == []
