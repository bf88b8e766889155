"""Beside a TLS broker the device token never travels in clear: a bundle URL over plain http
is refused before any request (loopback, the device itself, excepted), and an http
--fleet-url ends the start with one line. Against a real HTTP server that counts what reaches
it, on this machine's own non-loopback address (what a fleet on the LAN is)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from edgetally.models.bundle import generate_keypair, load_public_key, sha256_file
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import UpdateError, Updater, UpdateRequest

from tests.runtime.updates.updater_support import TARGET, make_bundle

TOKEN = "device-token-0123456789"


def _lan_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@dataclass
class Served:
    """A plain HTTP server on every address that serves one file and records each request."""

    port: int
    body: bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Path, tuple[Path, Path]]]:
    keys = generate_keypair(tmp_path / "keys")
    bundle = make_bundle(tmp_path, keys[0], "v1")
    state = Served(0, bundle.read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, bundle, keys
    finally:
        server.shutdown()
        server.server_close()


def _updater(root: Path, keys: tuple[Path, Path], host: str, *, tls: bool) -> Updater:
    return Updater(
        root,
        load_public_key(keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=TOKEN,
        fleet_host=host,
        https_only=tls,
    )


def _request(bundle: Path, url: str) -> UpdateRequest:
    return UpdateRequest("ro-1", url, sha256_file(bundle), bundle.stat().st_size)


def test_an_http_bundle_url_beside_a_tls_broker_is_refused_before_any_request(
    served: tuple[Served, Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    state, bundle, keys = served
    host = _lan_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    url = f"http://{host}:{state.port}/bundles/{sha256_file(bundle)}"
    up = _updater(tmp_path / "tls", keys, host, tls=True)
    result = up.apply(_request(bundle, url))
    assert not result.ok and result.reason is not None and "\n" not in result.reason
    assert f"bundle URL {url} refused: the broker is reached over TLS" in result.reason
    assert "https" in result.reason and "no token sent" in result.reason
    assert state.requests == []  # nothing reached the server: the token went nowhere
    assert up.current is None
    # the same URL beside a plain broker reaches that server, token and all
    plain = _updater(tmp_path / "plain", keys, host, tls=False)
    assert plain.apply(_request(bundle, url)).ok
    assert state.requests == [(f"/bundles/{sha256_file(bundle)}", f"Bearer {TOKEN}")]


def test_loopback_http_stays_allowed_and_https_is_kept(
    served: tuple[Served, Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    state, bundle, keys = served
    url = f"http://127.0.0.1:{state.port}/bundles/{sha256_file(bundle)}"
    up = _updater(tmp_path / "device", keys, "127.0.0.1", tls=True)
    assert up.apply(_request(bundle, url)).ok  # the fleet on the device itself (tests, demo)
    assert len(state.requests) == 1
    rebased = Updater(
        tmp_path / "other",
        load_public_key(keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=TOKEN,
        fleet_url="https://fleet.example/api",
        https_only=True,
    )
    assert rebased.bundle_url("http://10.0.0.1:8080/bundles/ab") == (
        "https://fleet.example/api/bundles/ab"
    )


def test_an_http_fleet_url_beside_a_tls_broker_ends_the_start_with_one_line(
    tmp_path: Path,
) -> None:
    keys = generate_keypair(tmp_path / "keys")
    with pytest.raises(UpdateError, match=r"--fleet-url http://fleet\.lan:8080 refused"):
        Updater(
            tmp_path / "d",
            load_public_key(keys[1]),
            TARGET,
            OnnxHealthCheck(),
            token=TOKEN,
            fleet_url="http://fleet.lan:8080",
            https_only=True,
        )
    token_file = tmp_path / "device.token"
    token_file.write_text(TOKEN + "\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "device",
            "update-agent",
            "--site",
            "shop1",
            "--device-id",
            "cam1",
            "--broker",
            "mqtts://fleet.lan:8883",
            "--models-dir",
            str(tmp_path / "models"),
            "--fleet-pubkey",
            str(keys[1]),
            "--device-class",
            "rpi5",
            "--fleet-url",
            "http://fleet.lan:8080",
            "--fleet-token-file",
            str(token_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("edgetally: error: --fleet-url http://fleet.lan:8080 refused: ")
    assert len(r.stderr.strip().splitlines()) == 1 and "https" in r.stderr
    assert TOKEN not in r.stderr + r.stdout
