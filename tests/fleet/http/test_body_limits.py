"""A request body is bounded before anything reads it: without a known token it is 401
before a byte of it is read (FastAPI would read a JSON body whole before checking the
token), an authenticated JSON body is at most 1 MiB, and bundle uploads keep their own
limit. Against the rollout routes and the `fleet serve` app, served by uvicorn."""

from __future__ import annotations

import os
import socket
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.service import RolloutService
from edgetally.fleet.server import FleetServer
from edgetally.models.bundle import (
    BundleTarget,
    create_bundle,
    generate_keypair,
    load_private_key,
)
from fastapi import FastAPI
from pydantic import BaseModel

from tests.conftest import Broker
from tests.runtime.updates.updater_support import serve

MIB = 1 << 20
FIFTY_MB = 50 * MIB


@dataclass
class Fleet:
    url: str
    keys: tuple[Path, Path]
    operator: dict[str, str]
    device: dict[str, str]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    keys = generate_keypair(tmp_path / "keys")
    tokens = tmp_path / "tokens.json"
    operator = {"Authorization": f"Bearer {add_token(tokens, 'otto', 'operator')}"}
    device = {"Authorization": f"Bearer {add_token(tokens, 'shop1/cam1', 'device')}"}
    service = RolloutService(
        tmp_path / "fleet",
        load_private_key(keys[0]),
        publish=lambda _t, _p: None,
        devices=lambda: ["shop1/cam1"],
        bundle_url=lambda sha: f"http://127.0.0.1/bundles/{sha}",
    )
    app = create_rollout_app(
        service, TokenStore.load(tokens), upload_dir=tmp_path, max_bundle_bytes=40 * MIB
    )
    with serve(app) as url:
        yield Fleet(url, keys, operator, device)


def _status_before_the_body(url: str, method: str, path: str, headers: dict[str, str]) -> str:
    """Send only the head of a request that declares a 50 MB body and read the answer: it
    comes only if the server answers without waiting for the body (the read is a generous
    wait, not a measurement)."""
    host, port = url.removeprefix("http://").split(":")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {FIFTY_MB}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = sock.recv(4096)
            if not got:
                break
            answer += got
    return answer.split(b"\r\n", 1)[0].decode()


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fifty_mb() -> Iterator[bytes]:
    block = b"{" * MIB  # one block sent 50 times: the client holds 1 MiB
    for _ in range(50):
        yield block


def test_a_body_without_a_known_token_is_refused_before_it_is_read(fleet: Fleet) -> None:
    for method, path in (("POST", "/rollouts"), ("PUT", "/bundles"), ("POST", "/rollouts/x/pause")):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
            status = _status_before_the_body(fleet.url, method, path, headers)
            assert status == "HTTP/1.1 401 Unauthorized", (method, path, headers, status)
    # a known token of too low a role: the route's 403, still before the body
    status = _status_before_the_body(fleet.url, "PUT", "/bundles", fleet.device)
    assert status == "HTTP/1.1 403 Forbidden", status
    # an operator's JSON body larger than any the API takes: 413 on what it declares
    status = _status_before_the_body(fleet.url, "POST", "/rollouts", fleet.operator)
    assert status == "HTTP/1.1 413 Request Entity Too Large", status


def test_a_50_mb_post_without_a_token_leaves_the_fleet_memory_alone(fleet: Fleet) -> None:
    httpx.get(fleet.url + "/rollouts", headers=fleet.operator)  # warm the app up
    before = _rss()
    tracemalloc.start()
    try:
        try:
            r = httpx.post(fleet.url + "/rollouts", content=_fifty_mb(), timeout=120)
            assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
        except httpx.TransportError:
            pass  # the server answered and closed while the body was still being sent
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = _rss() - before
    # the server (this process) held no part of the 50 MB: before, it read it whole (and
    # more beside it) before the 401; the bounds leave room for the client's 1 MiB block
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert grown < 24 * MIB, f"resident memory grew by {grown / MIB:.1f} MiB"


def test_an_authenticated_json_body_is_bounded_and_uploads_keep_their_limit(
    fleet: Fleet, tmp_path: Path
) -> None:
    r = httpx.post(fleet.url + "/rollouts", content=_fifty_mb(), headers=fleet.operator)
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["detail"]
    # a bundle upload larger than the JSON limit is taken (its own limit: 40 MiB here)
    model = tmp_path / "big.onnx"
    model.write_bytes(os.urandom(3 * MIB))
    big = tmp_path / "big.bundle"
    create_bundle(
        [model],
        private_key=load_private_key(fleet.keys[0]),
        out=big,
        name="big",
        version="3",
        targets=[BundleTarget.parse("onnxruntime:fp32:sim")],
    )
    up = httpx.put(fleet.url + "/bundles", content=big.read_bytes(), headers=fleet.operator)
    assert up.status_code == 200, up.text
    body = {"bundle_sha256": up.json()["sha256"], "selector": "shop1/*", "stages": "100%"}
    made = httpx.post(fleet.url + "/rollouts", json=body, headers=fleet.operator)
    assert made.status_code == 200, made.text
    assert list(made.json()["devices"]) == ["shop1/cam1"]


class _Echo(BaseModel):
    text: str


@pytest.mark.slow
def test_the_fleet_serve_app_refuses_an_unauthenticated_body_before_reading_it(
    tmp_path: Path, mosquitto: Broker
) -> None:
    def echo_route(app: FastAPI) -> None:  # a JSON route outside /api/v1, as /rollouts is
        @app.post("/echo")
        def echo(body: _Echo) -> dict[str, str]:
            return {"text": body.text}

    tokens = tmp_path / "tokens.json"
    analyst = {"Authorization": f"Bearer {add_token(tokens, 'ann', 'analyst')}"}
    config = FleetConfig.of(
        mosquitto.url, str(tmp_path / "f.duckdb"), "127.0.0.1:0", tokens_file=str(tokens)
    )
    with FleetServer(config, app_hooks=[echo_route]) as fleet:
        url = fleet.http_url
        assert _status_before_the_body(url, "POST", "/echo", {}) == ("HTTP/1.1 401 Unauthorized")
        ok = httpx.post(url + "/echo", json={"text": "hi"}, headers=analyst)
        assert ok.status_code == 200 and ok.json() == {"text": "hi"}
        big = httpx.post(url + "/echo", content=_fifty_mb(), headers=analyst)
        assert big.status_code == 413
