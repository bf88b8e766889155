"""Bearer tokens and roles on a real FastAPI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgetally.fleet.http.auth import (
    Authenticator,
    AuthError,
    Principal,
    TokenStore,
    WatchedTokens,
    add_token,
    install_auth,
    require_analyst,
    require_operator,
)
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "tokens.json"
    made = {
        "analyst": add_token(path, "ana", "analyst"),
        "operator": add_token(path, "opal", "operator"),
        "device": add_token(path, "shop1/a", "device"),
    }
    return path, made


def _app(path: Path | None, tokens: Authenticator | None = None) -> TestClient:
    app = FastAPI()
    if path is not None:
        install_auth(app, tokens or TokenStore.load(path))

    @app.get("/read")
    def read(who: Principal = Depends(require_analyst)) -> dict[str, str]:
        return {"name": who.name}

    @app.post("/manage")
    def manage(who: Principal = Depends(require_operator)) -> dict[str, str]:
        return {"name": who.name}

    return TestClient(app)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_roles(tokens: tuple[Path, dict[str, str]]) -> None:
    path, t = tokens
    c = _app(path)
    assert c.get("/read", headers=_h(t["analyst"])).json() == {"name": "ana"}
    assert c.get("/read", headers=_h(t["operator"])).json() == {"name": "opal"}
    assert c.post("/manage", headers=_h(t["operator"])).status_code == 200
    r = c.post("/manage", headers=_h(t["analyst"]))
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert c.get("/read", headers=_h(t["device"])).status_code == 403


def test_missing_and_invalid_tokens_are_401(tokens: tuple[Path, dict[str, str]]) -> None:
    path, t = tokens
    c = _app(path)
    for headers in ({}, {"Authorization": "Basic abc"}, _h("nope"), _h(t["analyst"] + "x")):
        r = c.get("/read", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"


def test_app_without_tokens_refuses_everyone(tokens: tuple[Path, dict[str, str]]) -> None:
    c = _app(None)
    assert c.get("/read", headers=_h(tokens[1]["operator"])).status_code == 401


def test_token_file_holds_hashes_only(tokens: tuple[Path, dict[str, str]]) -> None:
    path, t = tokens
    text = path.read_text()
    assert all(token not in text for token in t.values())
    assert path.stat().st_mode & 0o077 == 0


def test_bad_token_files(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"tokens": [{"name": "x", "role": "admin", "sha256": "' + "0" * 64 + '"}]}')
    with pytest.raises(AuthError, match=r"tokens\.0\.role"):
        TokenStore.load(bad)
    bad.write_text("{not json")
    with pytest.raises(AuthError):
        TokenStore.load(bad)
    with pytest.raises(AuthError, match="cannot read"):
        TokenStore.load(tmp_path / "missing.json")
    path = tmp_path / "ok.json"
    add_token(path, "a", "analyst")
    with pytest.raises(AuthError, match="already"):
        add_token(path, "a", "operator")


def _without(path: Path, name: str) -> None:
    """Remove a token's entry as an operator would: edit the file in place."""
    body = json.loads(path.read_text())
    body["tokens"] = [t for t in body["tokens"] if t["name"] != name]
    path.write_text(json.dumps(body, indent=2))


def test_a_removed_token_is_refused_without_a_restart(
    tokens: tuple[Path, dict[str, str]],
) -> None:
    path, t = tokens
    c = _app(path, WatchedTokens(path))
    assert c.get("/read", headers=_h(t["analyst"])).status_code == 200
    _without(path, "ana")
    assert c.get("/read", headers=_h(t["analyst"])).status_code == 401
    assert c.get("/read", headers=_h(t["operator"])).status_code == 200  # the others stay
    new = add_token(path, "bea", "analyst")  # and one added is let in
    assert c.get("/read", headers=_h(new)).json() == {"name": "bea"}


def test_a_token_file_that_breaks_refuses_everyone_until_fixed(
    tokens: tuple[Path, dict[str, str]],
) -> None:
    path, t = tokens
    good = path.read_text()
    c = _app(path, WatchedTokens(path))
    path.write_text(good[: len(good) // 2])  # half written
    assert c.get("/read", headers=_h(t["operator"])).status_code == 401
    path.unlink()
    assert c.get("/read", headers=_h(t["operator"])).status_code == 401
    path.write_text(good)
    assert c.get("/read", headers=_h(t["operator"])).status_code == 200


def test_a_bad_token_file_at_start_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(AuthError):
        WatchedTokens(bad)
