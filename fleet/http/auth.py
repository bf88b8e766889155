"""Bearer tokens for the fleet's HTTP API: analysts read, operators also manage rollouts.

Tokens live in a JSON file that holds only their SHA-256 (a leaked file grants nothing)::

    {"tokens": [{"name": "alice", "role": "operator", "sha256": "..."}]}

Roles are ordered: ``device`` (may only download bundles) < ``analyst`` (reads) <
``operator`` (also manages rollouts). A route asks for the least role it needs::

    from edgetally.fleet.http.auth import require_role
    @router.get("/sites", dependencies=[Depends(require_role("analyst"))])

and the app is given its tokens once with :func:`install_auth`. No token or an unknown one
is 401 (with ``WWW-Authenticate: Bearer``); a known token whose role is too low is 403. An app
without tokens installed refuses everyone (fail closed). :class:`WatchedTokens` rereads the
file when it changes, so a token removed from it is refused from the next request on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from edgetally.fleet.errors import FleetError
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

Role = Literal["device", "analyst", "operator"]
ROLE_RANK: dict[str, int] = {"device": 0, "analyst": 1, "operator": 2}
_STATE_KEY = "edgetally_tokens"


class AuthError(FleetError):
    """The token file is missing or invalid."""


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:/-]+$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: tuple[TokenEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenStore:
    entries: tuple[TokenEntry, ...]

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AuthError(f"cannot read token file {path}: {exc.strerror or exc}") from None
        try:
            parsed = TokenFile.model_validate_json(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(p) for p in err["loc"]) or "file"
            raise AuthError(f"token file {path}: {loc}: {err['msg']}") from None
        names = [e.name for e in parsed.tokens]
        if len(set(names)) != len(names):
            raise AuthError(f"token file {path}: a token name appears twice")
        return cls(parsed.tokens)

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        found: Principal | None = None
        for entry in self.entries:  # compare against every entry, in constant time each
            if hmac.compare_digest(entry.sha256, digest):
                found = Principal(entry.name, entry.role)
        return found


class Authenticator(Protocol):
    """What an app's tokens must do: name the holder of a token, or None."""

    def authenticate(self, token: str) -> Principal | None: ...


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class WatchedTokens:
    """The tokens of a file, reread when the file changes (checked on each request, one
    ``stat``): removing a token's entry revokes it without a restart, adding one (``fleet
    token add``) grants it. A file that was valid at start but no longer reads (missing,
    half written, invalid) refuses every token until it is fixed, and says so in the log:
    a revocation never fails open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._tokens = TokenStore.load(path)  # a bad file at start is an error, not a log line

    def current(self) -> TokenStore:
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._tokens = self._reload()
                    self._stamp = stamp
        return self._tokens

    def _reload(self) -> TokenStore:
        try:
            tokens = TokenStore.load(self.path)
        except AuthError as exc:
            log.warning("%s; every token is refused until the file is fixed", exc)
            return TokenStore(())
        log.info("token file %s reread: %d tokens", self.path, len(tokens.entries))
        return tokens

    def authenticate(self, token: str) -> Principal | None:
        return self.current().authenticate(token)


def add_token(path: Path, name: str, role: Role) -> str:
    """Create a token for ``name`` with ``role`` in the token file (created mode 0600) and
    return it: the only time it is shown."""
    if role not in ROLE_RANK:
        raise AuthError(f"unknown role {role!r}: use device, analyst or operator")
    store = TokenStore.load(path) if path.exists() else TokenStore(())
    if any(e.name == name for e in store.entries):
        raise AuthError(f"token file {path} has a token named {name!r} already")
    token = secrets.token_urlsafe(32)
    try:
        entry = TokenEntry(name=name, role=role, sha256=hash_token(token))
    except ValidationError:
        raise AuthError(f"token name {name!r}: use letters, digits and _ . @ : / -") from None
    body = TokenFile(tokens=(*store.entries, entry)).model_dump(mode="json")
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, indent=2)
        os.replace(tmp, path)
    except OSError as exc:
        raise AuthError(f"cannot write token file {path}: {exc.strerror or exc}") from None
    return token


def install_auth(app: FastAPI, store: Authenticator) -> None:
    """Give an app its tokens (a :class:`TokenStore`, or :class:`WatchedTokens` to follow
    the file); every route guarded by :func:`require_role` uses them."""
    setattr(app.state, _STATE_KEY, store)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def stored_tokens(app: object) -> Authenticator | None:
    """The tokens :func:`install_auth` gave ``app`` (a Starlette app), or None."""
    state = getattr(app, "state", None)
    return getattr(state, _STATE_KEY, None) if state is not None else None


def authenticate_header(header: str, store: Authenticator | None) -> tuple[Principal | None, str]:
    """An ``Authorization`` header's :class:`Principal` (None: refused, with why: no bearer
    token, or one ``store`` does not know; no store knows none)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, "missing bearer token"
    principal = store.authenticate(token.strip()) if store is not None else None
    return principal, "invalid token"


def authorize(request: Request, role: Role) -> Principal:
    """The request's :class:`Principal` if its role is at least ``role``; else an
    HTTPException: 401 (no or unknown token) or 403 (role too low)."""
    principal, why = authenticate_header(
        request.headers.get("authorization", ""), stored_tokens(request.app)
    )
    if principal is None:
        raise _unauthorized(why)
    if not principal.may(role):
        raise HTTPException(
            status_code=403, detail=f"role {principal.role} may not do this ({role} needed)"
        )
    return principal


def guard_prefix(app: FastAPI, prefix: str, role: Role) -> None:
    """Every request under ``prefix`` (e.g. ``/api/v1``) needs at least ``role``, whatever
    its route declares; routes may still ask for more (``require_role``)."""
    if role not in ROLE_RANK:
        raise AuthError(f"unknown role {role!r}")

    @app.middleware("http")
    async def _guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            try:
                authorize(request, role)
            except HTTPException as exc:
                return JSONResponse(
                    {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
                )
        return await call_next(request)


def require_role(role: Role) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the request's :class:`Principal` if its role is at least
    ``role``; else 401 (no/unknown token) or 403 (role too low)."""
    if role not in ROLE_RANK:
        raise AuthError(f"unknown role {role!r}")

    def dependency(request: Request) -> Principal:
        return authorize(request, role)

    dependency.__name__ = f"require_{role}"
    return dependency


require_analyst = require_role("analyst")
require_operator = require_role("operator")
