"""Model updates on the device: download (resumable), verify, A/B install, health check,
atomic switch, and rollback, also after a crash.

Layout under the updater's root directory::

    downloads/<sha256>.part   a download in progress; an interrupted one resumes (HTTP Range).
                              It never grows past the size the command announced (nor past
                              the device's limit, 512 MiB by default): a server that sends
                              more is cut off and the partial file deleted.
    slots/<sha256>/           the verified files of one bundle (installed side by side)
    current -> slots/<sha>    the model the pipeline loads (a symlink, swapped atomically);
                              absent: the device runs the model of its configuration
    previous -> slots/<sha>   the one before, kept for rollback (absent: the configured model)
    trial.json                written before a switch, removed once the new model ran
                              healthily: if it is still there at start, the new model crashed
                              the device and :meth:`Updater.recover` switches back.

Updates only go forward: a bundle whose signed version is not newer than the installed one
is refused, unless the fleet's command asks for a rollback and the bundle's signed manifest
says it is one (``rollback_of``, set by ``edgetally bundle create --rollback-of``) covering
the installed version. A flag in the command alone downgrades nothing.

Bundles come only from the fleet: with a fleet URL every announced URL is rebased onto it;
without one, an announced URL must name the broker's host (how this device reaches the
fleet). Any other host is refused before a request is made, so the device token goes nowhere
else. With a TLS broker (``mqtts://``) the token never travels in clear either: bundles come
over https only, and an http URL is refused before any request (loopback excepted: a fleet
on the device itself, as in tests and the demo, never puts the token on a network).

Aggregates never depend on the slots: they sit in the outbox, whichever model counted them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from edgetally.models.bundle import (
    Accept,
    BundleError,
    BundleManifest,
    BundleOrderError,
    BundleTarget,
    compare_versions,
    extract_bundle,
    sha256_file,
)
from edgetally.models.redact import redact_url
from edgetally.runtime.errors import EdgeRuntimeError
from edgetally.runtime.updates.health import HealthCheck, HealthResult

log = logging.getLogger(__name__)
_CHUNK = 1 << 16
DEFAULT_MAX_BUNDLE_BYTES = 512 << 20  # 512 MiB: the largest bundle a device downloads


class UpdateError(EdgeRuntimeError):
    """An update that cannot be installed; the old model stays. The message says why."""


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    rollout_id: str
    url: str
    sha256: str
    size: int  # of the bundle file, as the command announces it
    version: str | None = None  # the bundle's version as the command says (a hint)
    rollback: bool = False  # the command asks for a rollback (needs a bundle signed as one)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    ok: bool
    reason: str | None
    active: Path | None  # the slot in use afterwards


TrialRun = Callable[[Path, BundleManifest], None]
"""Load and run the newly switched model for real (e.g. reload the pipeline); raise if not."""

TargetOf = Callable[[], BundleTarget]
"""The device's target, when it is known only once its model is loaded (backend, precision)."""


def rebase_url(url: str, base: str | None) -> str:
    """``url``'s path and query under ``base`` (how this device reaches the fleet), or ``url``
    itself without a base. A relative ``url`` needs a base."""
    if not base:
        return url
    b, u = urlsplit(base), urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (as a URL names it) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name may resolve to any address


def _check_sha256(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise UpdateError(f"bad bundle sha256 {sha256[:70]!r}")


class Updater:
    def __init__(
        self,
        root: Path,
        public_key: Ed25519PublicKey,
        target: BundleTarget | TargetOf,
        health_check: HealthCheck,
        *,
        token: str | None = None,
        http: httpx.Client | None = None,
        trial_run: TrialRun | None = None,
        fleet_url: str | None = None,
        fleet_host: str | None = None,
        max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
        https_only: bool = False,
    ) -> None:
        """``fleet_url``: every bundle is fetched from there (the announced URL's path and
        query rebased onto it). Without it, ``fleet_host`` (the broker's host): an announced
        URL must name that host. With neither, no bundle is downloaded. ``max_bundle_bytes``:
        a larger announced bundle is refused before its download starts. ``https_only`` (the
        broker is reached over TLS): bundles only over https, except from loopback; an http
        ``fleet_url`` is refused here."""
        if max_bundle_bytes <= 0:
            raise ValueError("max_bundle_bytes must be positive")
        self.https_only = https_only
        if fleet_url:
            self._check_https(fleet_url, "--fleet-url")
        self.root = root
        self._key = public_key
        self._target = target
        self._fleet_url = fleet_url
        self._fleet_host = fleet_host.strip("[]").lower() if fleet_host else None
        self.max_bundle_bytes = max_bundle_bytes
        self.recovered: dict[str, str] | None = None  # the trial recover() rolled back, + reason
        self._check = health_check
        self._trial_run = trial_run
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0))
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        for sub in ("downloads", "slots"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ paths

    @property
    def current(self) -> Path | None:
        return self._resolve("current")

    @property
    def previous(self) -> Path | None:
        return self._resolve("previous")

    @property
    def trial_marker(self) -> Path:
        return self.root / "trial.json"

    def _resolve(self, name: str) -> Path | None:
        link = self.root / name
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    # ------------------------------------------------------------------ steps

    def recover(self) -> str | None:
        """At start: a trial that never got confirmed means the new model crashed the device;
        switch back and return why (to report), else None. The trial (rollout, sha256) and
        the reason stay in :attr:`recovered` for whoever reports it."""
        if not self.trial_marker.exists():
            return None
        try:
            trial = json.loads(self.trial_marker.read_text())
        except (OSError, ValueError):
            trial = {}
        self._back_to_previous()
        self.trial_marker.unlink(missing_ok=True)
        reason = "new model did not confirm healthy before a restart (crash?); rolled back"
        log.warning("%s: %s", trial.get("sha256", "?"), reason)
        if isinstance(trial, dict):
            self.recovered = {str(k): str(v) for k, v in trial.items()} | {"reason": reason}
        return reason

    def install_first(self, bundle: Path, *, any_target: bool = False) -> Path:
        """Provision a device with its first model (no health comparison). ``any_target``:
        the signature and hashes are checked, not the target (a device that learns its
        target from the model it loads)."""
        slot = self._install(bundle, sha256_file(bundle), check_target=not any_target)
        self._point("current", slot)
        return slot

    def apply(self, request: UpdateRequest) -> UpdateResult:
        """Download, verify, install side by side, check, switch, run; or keep the old."""
        old = self.current
        try:
            _check_sha256(request.sha256)  # before it names a path
            accept = self._order_check(request, old)
            slot = self._installed(request.sha256, accept)
            if slot is None:
                bundle = self.download(request)
                try:
                    slot = self._install(bundle, request.sha256, accept=accept)
                finally:
                    bundle.unlink(missing_ok=True)  # installed or refused: not kept twice
        except (UpdateError, BundleError) as exc:
            return UpdateResult(False, str(exc), old)
        manifest = BundleManifest.model_validate_json((slot / ".manifest.json").read_bytes())
        result = self._safe_check(slot, manifest, old)
        if not result.ok:
            if slot != old:
                shutil.rmtree(slot, ignore_errors=True)
            return UpdateResult(False, f"health check failed: {result.reason}", old)
        if slot == old:
            return UpdateResult(True, "already active", old)
        self._switch(slot, request)
        try:
            if self._trial_run is not None:
                self._trial_run(slot, manifest)
        except Exception as exc:  # the new model broke for real: back to the old one
            self.rollback()
            return UpdateResult(False, f"new model failed after the switch: {exc}", self.current)
        self.confirm()
        return UpdateResult(True, None, slot)

    def confirm(self) -> None:
        """The new model ran healthily: it stays after a restart."""
        self.trial_marker.unlink(missing_ok=True)

    def rollback(self) -> Path | None:
        """Switch back to the previous slot, or to the configured model when there was none
        (``current`` removed); returns the active slot (None: the configured model)."""
        self._back_to_previous()
        self.trial_marker.unlink(missing_ok=True)
        return self.current

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The pinned fleet key: bundles and the fleet's commands are signed with its half."""
        return self._key

    @property
    def target(self) -> BundleTarget:
        return self._target if isinstance(self._target, BundleTarget) else self._target()

    def bundle_url(self, url: str) -> str:
        """Where the bundle announced at ``url`` is fetched from: on the fleet's origin, or
        :class:`UpdateError` (before any request, so the token never leaves for another host)."""
        if self._fleet_url:
            return self._check_https(rebase_url(url, self._fleet_url), "bundle URL")
        shown = redact_url(url)[:120]
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise UpdateError(f"bundle URL {shown!r} is not a URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise UpdateError(f"bundle URL {shown!r} is not an http(s) URL with a host")
        if self._fleet_host is None:
            raise UpdateError(
                f"bundle URL {shown!r} refused: no fleet URL or broker host is configured "
                "to download from"
            )
        if host != self._fleet_host:
            raise UpdateError(
                f"bundle URL names host {host[:80]}, not the fleet's host {self._fleet_host} "
                "(the broker's): refused, no token sent (--fleet-url names the fleet when it "
                "is elsewhere)"
            )
        return self._check_https(url, "bundle URL")

    def _check_https(self, url: str, what: str) -> str:
        """``url``, or :class:`UpdateError` when the token would cross a network in clear:
        an http URL to anything but loopback while the broker is reached over TLS."""
        if not self.https_only:
            return url
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            raise UpdateError(f"{what} {redact_url(url)[:120]!r} is not a URL") from None
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
            return url
        raise UpdateError(
            f"{what} {redact_url(url)[:120]} refused: the broker is reached over TLS, so "
            "bundles come over https only (serve the fleet API over https, or give "
            "--fleet-url https://...); no token sent"
        )

    def download(self, request: UpdateRequest) -> Path:
        """Fetch the bundle into downloads/, resuming a partial file with HTTP Range. The
        file never grows past the announced size: a larger Content-Length, or more bytes
        than announced, stops the download and deletes the partial file."""
        _check_sha256(request.sha256)
        size = request.size
        if size <= 0:
            raise UpdateError("the update command announces no bundle size")
        if size > self.max_bundle_bytes:
            raise UpdateError(
                f"bundle of {size} bytes is over this device's limit of "
                f"{self.max_bundle_bytes} bytes (--max-bundle-mb): not downloaded"
            )
        url = self.bundle_url(request.url)
        part = self.root / "downloads" / f"{request.sha256}.part"
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        if have < size:
            self._fetch(url, part, have, size)
        if part.stat().st_size != size or sha256_file(part) != request.sha256:
            part.unlink(missing_ok=True)
            raise UpdateError("downloaded bundle does not match the announced size and sha256")
        return part

    def _fetch(self, url: str, part: Path, have: int, size: int) -> None:
        headers = dict(self._headers) | {"Accept-Encoding": "identity"}
        shown = redact_url(url)
        got = have
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with self._http.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 200 and have:
                    have = 0  # the server ignored Range: start over
                elif resp.status_code not in (200, 206):
                    raise UpdateError(f"download of {shown} failed: HTTP {resp.status_code}")
                expected = size - have
                length = resp.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) != expected):
                    part.unlink(missing_ok=True)
                    raise UpdateError(
                        f"download of {shown} refused: the server announces {length[:20]} bytes, "
                        f"the update command {expected}; the partial file is deleted"
                    )
                with part.open("r+b" if have else "wb") as fh:
                    fh.seek(have)
                    fh.truncate()
                    got = have
                    for chunk in resp.iter_raw():  # raw: no decompression past the size
                        got += len(chunk)
                        if got > size:
                            break
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
        except httpx.HTTPError as exc:
            raise UpdateError(f"download of {shown} interrupted: {exc}") from None
        if got > size:
            part.unlink(missing_ok=True)
            raise UpdateError(
                f"download of {shown} stopped: the server sent more than the announced {size} "
                "bytes; the partial file is deleted"
            )

    # ------------------------------------------------------------------ internals

    def _back_to_previous(self) -> None:
        prev, cur = self.previous, self.current
        if prev is None:
            (self.root / "current").unlink(missing_ok=True)
        elif prev != cur:
            self._point("current", prev)
            if cur is not None:
                self._point("previous", cur)

    def _order_check(self, request: UpdateRequest, old: Path | None) -> Accept | None:
        """What a bundle's signed manifest must allow to replace the model in ``old``: a newer
        version, or a signed rollback the command asks for. The command's own version (a hint:
        the manifest decides) already refuses an older bundle before it is downloaded."""
        if old is None or old.name == request.sha256:
            return None  # the configured model (no version), or this very bundle again
        try:
            installed = BundleManifest.model_validate_json(
                (old / ".manifest.json").read_bytes()
            ).version
        except (OSError, ValueError) as exc:
            raise UpdateError(f"the installed model's manifest cannot be read: {exc}") from None
        hint = request.version
        if hint is not None and not request.rollback and compare_versions(hint, installed) <= 0:
            raise UpdateError(
                f"the command offers version {hint[:64]}, not newer than the installed version "
                f"{installed}; updates only go forward unless the fleet rolls back"
            )

        def accept(manifest: BundleManifest) -> None:
            why = manifest.may_replace(installed, rollback=request.rollback)
            if why is not None:
                raise BundleOrderError(why)

        return accept

    def _installed(self, sha256: str, accept: Accept | None) -> Path | None:
        """The slot of a bundle installed before (its files were verified then), once its
        manifest passes ``accept``; None when there is none."""
        slot = self.root / "slots" / sha256
        if not slot.is_dir():
            return None
        if accept is not None:
            try:
                manifest = BundleManifest.model_validate_json(
                    (slot / ".manifest.json").read_bytes()
                )
            except (OSError, ValueError) as exc:
                raise UpdateError(f"installed slot {sha256[:16]}... is damaged: {exc}") from None
            accept(manifest)
        return slot

    def _install(
        self,
        bundle: Path,
        sha256: str,
        *,
        check_target: bool = True,
        accept: Accept | None = None,
    ) -> Path:
        slot = self._installed(sha256, accept)
        if slot is not None:
            return slot
        slot = self.root / "slots" / sha256
        staging = self.root / "slots" / f".{sha256}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        target = self.target if check_target else None
        verified = extract_bundle(bundle, self._key, staging, target=target, accept=accept)
        (staging / ".manifest.json").write_text(verified.manifest.model_dump_json())
        os.replace(staging, slot)
        return slot

    def _safe_check(self, slot: Path, manifest: BundleManifest, old: Path | None) -> HealthResult:
        try:
            return self._check(slot, manifest, old)
        except Exception as exc:  # a check that crashes is a failed check
            return HealthResult(False, f"{type(exc).__name__}: {exc}")

    def _switch(self, slot: Path, request: UpdateRequest) -> None:
        old = self.current
        marker = {
            "rollout": request.rollout_id,
            "sha256": request.sha256,
            "at": datetime.now(UTC).isoformat(),
        }
        tmp = self.trial_marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(marker))
        os.replace(tmp, self.trial_marker)
        if old is not None:
            self._point("previous", old)
        self._point("current", slot)

    def _point(self, name: str, target: Path) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(target, self.root))
        os.replace(tmp, self.root / name)  # rename(2): atomic
