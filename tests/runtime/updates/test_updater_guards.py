"""What the device's updater refuses, against real HTTP servers on loopback: an older signed
bundle (unless it is a signed rollback the command asks for), a download larger than
announced or than the device's limit, and any host other than the fleet's."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Unpack

from edgetally.models.bundle import load_public_key
from edgetally.runtime.updates.health import OnnxHealthCheck
from edgetally.runtime.updates.updater import Updater, UpdateRequest

from tests.runtime.updates.test_updater import Fleet, fleet  # noqa: F401 (a fixture)
from tests.runtime.updates.updater_support import TARGET, UpdaterOptions, make_bundle
from tests.runtime.uplink.test_publisher import wait_until

FIFTY_MB = 50 << 20


def _updater(fleet: Fleet, root: str = "device", **kw: Unpack[UpdaterOptions]) -> Updater:  # noqa: F811
    kw.setdefault("fleet_host", "127.0.0.1")
    return Updater(
        fleet.tmp / root,
        load_public_key(fleet.keys[1]),
        TARGET,
        OnnxHealthCheck(),
        token=fleet.device_token,
        **kw,
    )


def _slots(up: Updater) -> list[str]:
    return sorted(p.name for p in (up.root / "slots").iterdir())


def _downloads(up: Updater) -> list[str]:
    return sorted(p.name for p in (up.root / "downloads").iterdir())


# --------------------------------------------------------------------------- forward only


def test_an_older_or_equal_signed_bundle_is_refused(fleet: Fleet) -> None:  # noqa: F811
    up = _updater(fleet)
    v3 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "det-v3", version="3"))
    v1 = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "det-v1", version="1"))
    also3 = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "det-v3b", version="3.0"))
    cases = {
        "v1, no version in the command": v1,
        "v1, the command lies that it is version 99": UpdateRequest(
            v1.rollout_id, v1.url, v1.sha256, v1.size, version="99"
        ),
        "the same version, another bundle": also3,
    }
    for case, req in cases.items():
        r = up.apply(req)
        assert not r.ok, case
        assert r.reason is not None and "\n" not in r.reason
        assert "not newer than the installed version 3" in r.reason, (case, r.reason)
        assert "updates only go forward" in r.reason
        assert up.current == v3 and _slots(up) == [v3.name], case
        assert _downloads(up) == [], case  # what was refused is not kept
    # the command's version, when it says so, refuses before anything is downloaded
    hinted = UpdateRequest(v1.rollout_id, v1.url, v1.sha256, v1.size, version="1")
    r = up.apply(hinted)
    assert not r.ok and "the command offers version 1" in (r.reason or "")


def test_a_rollback_flag_alone_downgrades_nothing(fleet: Fleet) -> None:  # noqa: F811
    up = _updater(fleet)
    v3 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "det-v3", version="3"))
    v1 = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "det-v1", version="1"))
    flagged = UpdateRequest(v1.rollout_id, v1.url, v1.sha256, v1.size, "1", rollback=True)
    r = up.apply(flagged)
    assert not r.ok and "the bundle is not signed for" in (r.reason or ""), r.reason
    assert up.current == v3 and _slots(up) == [v3.name]


def test_a_signed_rollback_goes_back_only_when_asked_and_only_from_its_versions(
    fleet: Fleet,  # noqa: F811
) -> None:
    up = _updater(fleet)
    v3 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "det-v3", version="3"))
    back = fleet.publish(
        make_bundle(fleet.tmp, fleet.keys[0], "det-v1r", version="1", rollback_of="3")
    )
    r = up.apply(back)  # signed as a rollback, but the command does not ask for one
    assert not r.ok and "the command does not ask for one" in (r.reason or ""), r.reason
    assert up.current == v3

    rollback = UpdateRequest(back.rollout_id, back.url, back.sha256, back.size, "1", True)
    r = up.apply(rollback)
    assert r.ok, r.reason
    assert up.current is not None and up.current.name == back.sha256 and up.previous == v3

    v4 = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "det-v4", version="4"))
    assert up.apply(v4).ok  # forward again
    r = up.apply(rollback)  # the same signed rollback, replayed: v4 is past what it covers
    assert not r.ok and "roll back versions up to 3 only" in (r.reason or ""), r.reason
    assert up.current is not None and up.current.name == v4.sha256


# --------------------------------------------------------------------------- size caps


@dataclass
class LyingServer:
    """A real HTTP server on loopback that streams ``FIFTY_MB`` whatever was announced."""

    url: str
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # bytes written, per response


@contextmanager
def lying_server(
    host: str = "127.0.0.1", *, content_length: int | None = None
) -> Iterator[LyingServer]:
    """``content_length``: the Content-Length it announces (None: none, the body ends when
    the connection closes)."""
    holder: dict[str, LyingServer] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            server = holder["server"]
            server.requests.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if content_length is not None:
                self.send_header("Content-Length", str(content_length))
            self.end_headers()
            block = b"\0" * (1 << 16)
            sent = 0
            try:
                while sent < FIFTY_MB:
                    self.wfile.write(block)
                    sent += len(block)
            except OSError:  # the client hung up
                pass
            server.sent.append(sent)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer((host, 0), Handler)
    holder["server"] = LyingServer(f"http://{host}:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _request(url: str, size: int) -> UpdateRequest:
    sha = secrets.token_hex(32)
    return UpdateRequest("ro-1", f"{url}/bundles/{sha}", sha, size)


def _wait_for_sent(server: LyingServer) -> int:
    """The bytes the server wrote before the device hung up (its handler ends with that)."""
    assert wait_until(lambda: bool(server.sent), 60)
    return server.sent[0]


def test_a_server_sending_more_than_announced_is_cut_off(fleet: Fleet) -> None:  # noqa: F811
    up = _updater(fleet)
    with lying_server(content_length=None) as server:
        r = up.apply(_request(server.url, 1000))
        assert not r.ok
        assert "sent more than the announced 1000 bytes" in (r.reason or ""), r.reason
        assert "partial file is deleted" in (r.reason or "")
        assert _downloads(up) == [] and _slots(up) == []
        assert _wait_for_sent(server) < FIFTY_MB  # the device hung up; it did not read it all


def test_a_content_length_above_the_announced_size_is_refused(
    fleet: Fleet,  # noqa: F811
) -> None:
    up = _updater(fleet)
    with lying_server(content_length=FIFTY_MB) as server:
        r = up.apply(_request(server.url, 1000))
        assert not r.ok
        assert f"the server announces {FIFTY_MB} bytes, the update command 1000" in (
            r.reason or ""
        ), r.reason
        assert _downloads(up) == []
        assert _wait_for_sent(server) < FIFTY_MB


def test_a_bundle_over_the_device_limit_is_not_downloaded(fleet: Fleet) -> None:  # noqa: F811
    up = _updater(fleet, max_bundle_bytes=4096)
    with lying_server(content_length=5000) as server:
        r = up.apply(_request(server.url, 5000))
        assert not r.ok
        assert "bundle of 5000 bytes is over this device's limit of 4096 bytes" in (
            r.reason or ""
        ), r.reason
        assert server.requests == [] and _downloads(up) == []
    assert _updater(fleet, "other").max_bundle_bytes == 512 << 20  # the default
    # a real bundle within the limit still installs
    req = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "small"))
    assert _updater(fleet, "third", max_bundle_bytes=req.size).apply(req).ok


# --------------------------------------------------------------------------- the fleet's origin


def test_without_a_fleet_url_only_the_broker_host_gets_the_token(
    fleet: Fleet,  # noqa: F811
) -> None:
    good = fleet.publish(make_bundle(fleet.tmp, fleet.keys[0], "v2"))
    with lying_server("127.0.0.2", content_length=good.size) as rogue:
        elsewhere = UpdateRequest(
            "ro-1", f"{rogue.url}/bundles/{good.sha256}", good.sha256, good.size
        )
        up = _updater(fleet)  # the broker's host is 127.0.0.1
        r = up.apply(elsewhere)
        assert not r.ok
        assert "names host 127.0.0.2, not the fleet's host 127.0.0.1" in (r.reason or "")
        assert "no token sent" in (r.reason or "")
        for url in ("ftp://127.0.0.1/x", "/bundles/x", "http://[::1"):
            r = up.apply(UpdateRequest("ro-1", url, good.sha256, good.size))
            assert not r.ok and "URL" in (r.reason or ""), r.reason
        r = _updater(fleet, "no-origin", fleet_host=None).apply(good)
        assert not r.ok and "no fleet URL or broker host is configured" in (r.reason or "")
        assert rogue.requests == []  # not one request, so no token, went to the other host

        # with a fleet URL, whatever host a command names, the bundle comes from the fleet
        pinned = _updater(fleet, "pinned", fleet_host=None, fleet_url=fleet.url)
        r = pinned.apply(elsewhere)
        assert r.ok, r.reason
        assert rogue.requests == []
    # and from the broker's host the bundle installs as before
    assert up.apply(good).ok


def test_a_sha256_that_is_a_path_names_no_directory(fleet: Fleet) -> None:  # noqa: F811
    up = _updater(fleet)
    v1 = up.install_first(make_bundle(fleet.tmp, fleet.keys[0], "v1"))
    for sha in ("..", f"../slots/{v1.name}", "../../" + "a" * 58):
        r = up.apply(UpdateRequest("ro-1", "http://127.0.0.1:9/x", sha, 10))
        assert not r.ok and "bad bundle sha256" in (r.reason or ""), r.reason
    assert up.current == v1 and v1.is_dir() and _slots(up) == [v1.name]
