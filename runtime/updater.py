"""Model updates on the device: download (resumable), verify, A/B install, health check,
atomic switch, and rollback, also after a crash.

Layout under the updater's root directory::

    downloads/<sha256>.part   a download in progress; an interrupted one resumes (HTTP Range)
    slots/<sha256>/           the verified files of one bundle (installed side by side)
    current -> slots/<sha>    the model the pipeline loads (a symlink, swapped atomically);
                              absent: the device runs the model of its configuration
    previous -> slots/<sha>   the one before, kept for rollback (absent: the configured model)
    trial.json                written before a switch, removed once the new model ran
                              healthily: if it is still there at start, the new model crashed
                              the device and :meth:`Updater.recover` switches back.

Aggregates never depend on the slots: they sit in the outbox, whichever model counted them.
"""

from __future__ import annotations

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
    BundleError,
    BundleManifest,
    BundleTarget,
    extract_bundle,
    sha256_file,
)
from edgetally.runtime.errors import EdgeRuntimeError
from edgetally.runtime.updater_health import HealthCheck, HealthResult

log = logging.getLogger(__name__)
_CHUNK = 1 << 16


class UpdateError(EdgeRuntimeError):
    """An update that cannot be installed; the old model stays. The message says why."""


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    rollout_id: str
    url: str
    sha256: str
    size: int


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
    ) -> None:
        self.root = root
        self._key = public_key
        self._target = target
        self._fleet_url = fleet_url
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
            bundle = self.download(request)
            slot = self._install(bundle, request.sha256)
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
    def target(self) -> BundleTarget:
        return self._target if isinstance(self._target, BundleTarget) else self._target()

    def download(self, request: UpdateRequest) -> Path:
        """Fetch the bundle into downloads/, resuming a partial file with HTTP Range."""
        if len(request.sha256) != 64 or any(c not in "0123456789abcdef" for c in request.sha256):
            raise UpdateError(f"bad bundle sha256 {request.sha256[:70]!r}")
        part = self.root / "downloads" / f"{request.sha256}.part"
        url = rebase_url(request.url, self._fleet_url)
        have = part.stat().st_size if part.exists() else 0
        if have > request.size:
            part.unlink()
            have = 0
        if have < request.size:
            headers = dict(self._headers)
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with self._http.stream("GET", url, headers=headers) as resp:
                    if resp.status_code == 200 and have:
                        have = 0  # the server ignored Range: start over
                    elif resp.status_code not in (200, 206):
                        raise UpdateError(
                            f"download of {url} failed: HTTP {resp.status_code}"
                        )
                    with part.open("r+b" if have else "wb") as fh:
                        fh.seek(have)
                        fh.truncate()
                        for chunk in resp.iter_bytes():
                            fh.write(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
            except httpx.HTTPError as exc:
                raise UpdateError(f"download of {url} interrupted: {exc}") from None
        if part.stat().st_size != request.size or sha256_file(part) != request.sha256:
            part.unlink(missing_ok=True)
            raise UpdateError("downloaded bundle does not match the announced size and sha256")
        return part

    # ------------------------------------------------------------------ internals

    def _back_to_previous(self) -> None:
        prev, cur = self.previous, self.current
        if prev is None:
            (self.root / "current").unlink(missing_ok=True)
        elif prev != cur:
            self._point("current", prev)
            if cur is not None:
                self._point("previous", cur)

    def _install(self, bundle: Path, sha256: str, *, check_target: bool = True) -> Path:
        slot = self.root / "slots" / sha256
        if slot.is_dir():
            return slot
        staging = self.root / "slots" / f".{sha256}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        target = self.target if check_target else None
        verified = extract_bundle(bundle, self._key, staging, target=target)
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
