"""Rollouts with their own small persistence and the commands they send.

Bundles live under one directory (``bundles/<sha256>.bundle``, verified, served to devices
over HTTP); rollout records (one :class:`~.plan.Rollout` each) in ``records``: the fleet's
database (:class:`~.records.StoreRecords`) when the fleet serves them, else
``rollouts/<id>.json`` files beside the bundles (:class:`~.records.FileRecords`).

:class:`RolloutService` is thread-safe: the HTTP API and the MQTT link call it from their
own threads. It holds the fleet's bundle signing key: bundles are verified with its public
half, and every command it sends is signed with it (:mod:`edgetally.models.commands`), so
devices obey no one else. Sending is a ``publish(topic, payload)`` callable (QoS 1 in
:mod:`edgetally.fleet.rollout.mqtt`), the devices a rollout may select come from a
``devices()`` callable (the fleet store's device list, or a fixed list).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgetally.fleet.rollout import plan as machine
from edgetally.fleet.rollout.plan import Action, BundleRef, Notify, Rollout, RolloutError
from edgetally.fleet.rollout.records import FileRecords, RolloutRecords
from edgetally.models.bundle import (
    BundleError,
    key_id,
    load_private_key,
    load_public_key,
    verify_bundle,
)
from edgetally.models.commands import sign_command
from edgetally.models.errors import WireError
from edgetally.models.topics import parse_topic, topic_for
from edgetally.models.wire import ROLLBACK_ACTION, UPDATE_ACTION, UpdateReport, parse, to_json
from pydantic import ValidationError

Publish = Callable[[str, bytes], None]


class RolloutNotFound(RolloutError):
    """No rollout or bundle with that id."""


class RolloutService:
    def __init__(
        self,
        state_dir: Path,
        signing_key: Ed25519PrivateKey,
        *,
        publish: Publish,
        devices: Callable[[], Iterable[str]],
        bundle_url: Callable[[str], str],
        records: RolloutRecords | None = None,
    ) -> None:
        self._dir = state_dir
        self._bundles = state_dir / "bundles"
        self._rollouts = state_dir / "rollouts"
        try:
            self._bundles.mkdir(parents=True, exist_ok=True)
            self._rollouts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RolloutError(f"cannot use rollout state directory {state_dir}: {exc}") from None
        self._signing_key = signing_key  # signs every command; bundles verify with its half
        self._key = signing_key.public_key()
        self._publish = publish
        self._devices = devices
        self._bundle_url = bundle_url
        self._lock = threading.RLock()
        self._cache: dict[str, Rollout] = {}
        self.records: RolloutRecords = records or FileRecords(self._rollouts)

    # ---------------------------------------------------------------- bundles

    def add_bundle(self, path: Path) -> BundleRef:
        """Verify a bundle with the fleet's key and keep a copy to serve."""
        try:
            verified = verify_bundle(path, self._key)
        except BundleError as exc:
            raise RolloutError(f"bundle refused: {exc}") from None
        dest = self.bundle_path(verified.sha256, must_exist=False)
        if not dest.exists():
            tmp = dest.with_name(dest.name + f".{secrets.token_hex(4)}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        m = verified.manifest
        return BundleRef(
            sha256=verified.sha256,
            name=m.name,
            version=m.version,
            size=verified.size,
            rollback_of=m.rollback_of,
        )

    def add_bundle_chunks(self, chunks: Iterator[bytes]) -> BundleRef:
        with tempfile.NamedTemporaryFile(dir=self._bundles, suffix=".upload", delete=False) as fh:
            tmp = Path(fh.name)
            for chunk in chunks:
                fh.write(chunk)
        try:
            return self.add_bundle(tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def bundle_path(self, sha256: str, *, must_exist: bool = True) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise RolloutNotFound(f"no bundle {sha256[:70]!r}")
        path = self._bundles / f"{sha256}.bundle"
        if must_exist and not path.is_file():
            raise RolloutNotFound(f"no bundle {sha256}")
        return path

    def bundle_ref(self, sha256: str) -> BundleRef:
        return self.add_bundle(self.bundle_path(sha256))

    # ---------------------------------------------------------------- rollouts

    def create(
        self,
        bundle_sha256: str,
        selector: str,
        stages: str,
        *,
        success_ratio: float = 1.0,
        failure_ratio: float = 0.0,
        report_timeout_s: float = 900.0,
    ) -> Rollout:
        ref = self.bundle_ref(bundle_sha256)
        with self._lock:
            rollout_id = f"ro-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
            rollout, actions = machine.new_rollout(
                rollout_id,
                ref,
                selector,
                machine.parse_stages(stages),
                self._devices(),
                success_ratio=success_ratio,
                failure_ratio=failure_ratio,
                report_timeout_s=report_timeout_s,
            )
            self._save(rollout)
            self._send(rollout, actions)
            return rollout.model_copy(deep=True)

    def get(self, rollout_id: str) -> Rollout:
        with self._lock:
            return self._load(rollout_id).model_copy(deep=True)

    def all(self) -> list[Rollout]:
        with self._lock:
            ids = self.records.ids()
            return [self._load(i).model_copy(deep=True) for i in ids]

    def pause(self, rollout_id: str) -> Rollout:
        return self._apply(rollout_id, machine.pause)

    def resume(self, rollout_id: str) -> Rollout:
        return self._apply(rollout_id, machine.resume)

    def abort(self, rollout_id: str) -> Rollout:
        return self._apply(rollout_id, machine.abort)

    def tick(self) -> None:
        """Time out silent devices of running rollouts (call every few seconds)."""
        with self._lock:
            for rollout in self.all():
                if rollout.state == "running":
                    self._apply(rollout.id, machine.expire)

    def handle_report(self, topic: str, payload: bytes) -> None:
        """A message from ``edgetally/v1/{site}/{device}/update``; raises RolloutError/WireError
        on anything malformed or spoofed."""
        if parse_topic(topic).kind != "update":
            raise WireError(f"not an update topic: {topic[:80]!r}")
        report = parse(topic, payload)  # the payload's site and device must be the topic's
        assert isinstance(report, UpdateReport)
        device = f"{report.site}/{report.device}"
        with self._lock:
            rollout = self._load(report.rollout_id)
            if report.bundle_sha256 != rollout.bundle.sha256:
                raise RolloutError(f"{device} reported on another bundle for {rollout.id}")
            actions = machine.record_report(rollout, device, report.outcome, report.reason)
            self._save(rollout)
            self._send(rollout, actions)

    # ---------------------------------------------------------------- internals

    def _apply(self, rollout_id: str, step: Callable[[Rollout], list[Action]]) -> Rollout:
        with self._lock:
            rollout = self._load(rollout_id)
            actions = step(rollout)
            self._save(rollout)
            self._send(rollout, actions)
            return rollout.model_copy(deep=True)

    def _send(self, rollout: Rollout, actions: list[Action]) -> None:
        """One command per action, signed with the fleet's key (devices obey no other)."""
        now = datetime.now(UTC)
        bundle = rollout.bundle
        for action in actions:
            site, device = action.device.split("/", 1)
            if isinstance(action, Notify):
                cmd = sign_command(
                    self._signing_key,
                    site=site,
                    device=device,
                    action=UPDATE_ACTION,
                    rollout=rollout.id,
                    bundle_sha256=bundle.sha256,
                    version=bundle.version,
                    url=self._bundle_url(bundle.sha256),
                    size=bundle.size,
                    # devices take an older version only when the bundle is signed as a
                    # rollback too: this flag alone downgrades nothing
                    rollback=bundle.rollback_of is not None,
                    at=now,
                )
            else:  # roll back this rollout's bundle, on a device where it is the one in use
                cmd = sign_command(
                    self._signing_key,
                    site=site,
                    device=device,
                    action=ROLLBACK_ACTION,
                    rollout=rollout.id,
                    bundle_sha256=bundle.sha256,
                    version=bundle.version,
                    at=now,
                )
            self._publish(topic_for(site, device, "cmd"), to_json(cmd))

    def _load(self, rollout_id: str) -> Rollout:
        cached = self._cache.get(rollout_id)
        if cached is not None:
            return cached
        rollout = load_record(self.records, rollout_id)
        self._cache[rollout_id] = rollout
        return rollout

    def _save(self, rollout: Rollout) -> None:
        check_rollout_id(rollout.id)
        self.records.put(rollout)
        self._cache[rollout.id] = rollout


def load_signing_key(path: Path, pubkey: Path | None = None) -> Ed25519PrivateKey:
    """The fleet's bundle signing key (``bundle keygen``'s ``fleet.key``); ``pubkey``, when
    given, must be its public half (what the devices pin). RolloutError if not."""
    try:
        key = load_private_key(path)
        pinned = load_public_key(pubkey) if pubkey is not None else None
    except BundleError as exc:
        raise RolloutError(str(exc)) from None
    if pinned is not None and key_id(pinned) != key_id(key.public_key()):
        raise RolloutError(
            f"{pubkey} (key {key_id(pinned)}) is not the public half of the signing key {path} "
            f"(key {key_id(key.public_key())}): devices pinning it would refuse every command"
        )
    return key


def check_rollout_id(rollout_id: str) -> str:
    """``rollout_id`` if it can name a rollout, else RolloutNotFound."""
    if (
        not rollout_id
        or len(rollout_id) > 128
        or not all(c.isalnum() or c in "_.:-" for c in rollout_id)
    ):
        raise RolloutNotFound(f"no rollout {rollout_id[:70]!r}")
    return rollout_id


def load_record(records: RolloutRecords, rollout_id: str) -> Rollout:
    """One rollout from ``records``: RolloutNotFound, or RolloutError when damaged."""
    text = records.get(check_rollout_id(rollout_id))
    if text is None:
        raise RolloutNotFound(f"no rollout {rollout_id}")
    try:
        return Rollout.model_validate_json(text)
    except ValidationError as exc:
        raise RolloutError(
            f"rollout {rollout_id}: damaged record ({exc.errors()[0]['msg']})"
        ) from None
