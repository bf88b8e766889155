"""`edgetally fleet rollout|token|broker-config` against a real rollout HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgetally.fleet.http.auth import TokenStore, add_token
from edgetally.fleet.http.rollout import create_rollout_app
from edgetally.fleet.rollout.service import RolloutService
from edgetally.models.bundle import generate_keypair, load_private_key

from tests.runtime.updates.updater_support import make_bundle, serve


def _cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if token:
        env["EDGETALLY_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_rollout_commands(tmp_path: Path) -> None:
    keys = generate_keypair(tmp_path / "keys")
    tokens = tmp_path / "tokens.json"
    r = _cli("fleet", "token", "add", "--file", str(tokens), "--name", "op", "--role", "operator")
    assert r.returncode == 0, r.stderr
    operator = r.stdout.strip()
    analyst = add_token(tokens, "an", "analyst")
    sent: list[str] = []
    service = RolloutService(
        tmp_path / "fleet",
        load_private_key(keys[0]),
        publish=lambda t, p: sent.append(t),
        devices=lambda: [f"s/d{i}" for i in range(20)],
        bundle_url=lambda sha: f"x/{sha}",
    )
    bundle = make_bundle(tmp_path, keys[0], "v2")
    with serve(create_rollout_app(service, TokenStore.load(tokens))) as url:
        r = _cli(
            "fleet",
            "rollout",
            "create",
            str(bundle),
            "--to",
            "s/*",
            "--stages",
            "10%,100%",
            "--url",
            url,
            token=operator,
        )
        assert r.returncode == 0, r.stderr
        assert "to 20 devices" in r.stdout and len(sent) == 2
        rid = r.stdout.split()[1].rstrip(":")
        r = _cli("fleet", "rollout", "status", "--url", url, token=analyst)
        assert r.returncode == 0 and rid in r.stdout and "running" in r.stdout
        r = _cli("fleet", "rollout", "pause", rid, "--url", url, token=analyst)
        assert r.returncode == 1 and "403" in r.stderr and "Traceback" not in r.stderr
        r = _cli("fleet", "rollout", "pause", rid, "--url", url, token=operator)
        assert r.returncode == 0 and "paused" in r.stdout
        r = _cli("fleet", "rollout", "abort", rid, "--url", url, token=operator)
        assert r.returncode == 0 and "aborted" in r.stdout
        r = _cli("fleet", "rollout", "status", rid, "--url", url, token=analyst)
        assert "aborted" in r.stdout and "rollback sent: 2 devices" in r.stdout
        r = _cli("fleet", "rollout", "resume", rid, "--url", url, token=operator)
        assert r.returncode == 1 and "cannot resume" in r.stderr
        r = _cli("fleet", "rollout", "status", "nope", "--url", url, token=analyst)
        assert r.returncode == 1 and "404" in r.stderr
        # a bundle signed by another key is refused at upload
        other = generate_keypair(tmp_path / "other")
        evil = make_bundle(tmp_path / "o", other[0], "evil")
        r = _cli("fleet", "rollout", "create", str(evil), "--to", "*", "--url", url, token=operator)
        assert r.returncode == 1 and "pinned public key" in r.stderr
