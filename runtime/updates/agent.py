"""The device's MQTT side of updates: listens on its own cmd topic, runs the
:class:`~edgetally.runtime.updates.updater.Updater` in a worker thread, reports on its update topic.

No command stops it: a payload that does not parse, or whose handling raises anything, is
counted in :attr:`UpdateAgent.rejected`, logged, reported as a failure when it names a
rollout and a bundle, and the agent goes on with the next one.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from edgetally.models.broker_url import DEFAULT_PORT
from edgetally.models.topics import ID_PATTERN, DeviceId, SiteId, topic_for
from edgetally.models.wire import (
    ROLLBACK_ACTION,
    SHA256_PATTERN,
    UPDATE_ACTION,
    Command,
    CommandId,
    UpdateOutcome,
    UpdateReport,
    from_json,
    to_json,
)
from edgetally.runtime.errors import EdgeRuntimeError
from edgetally.runtime.updates.updater import Updater, UpdateRequest
from edgetally.runtime.uplink.broker import (
    BrokerAddress,
    BrokerLogin,
    describe_connect_error,
    make_client,
)

log = logging.getLogger(__name__)
_ID = re.compile(ID_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)


class UpdateAgent:
    def __init__(
        self,
        updater: Updater,
        site: str,
        device: str,
        *,
        login: BrokerLogin | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        password: str = "",
        ca_cert: Path | None = None,
    ) -> None:
        """``login`` (the device's, shared with its publisher), or ``host``, ``port``,
        ``password`` (user ``site/device``) and ``ca_cert`` (TLS when given)."""
        self.updater = updater
        self.site, self.device = site, device
        self._cmd_topic = topic_for(site, device, "cmd")
        self._report_topic = topic_for(site, device, "update")
        if login is None:
            address = BrokerAddress(host, port, tls=ca_cert is not None)
            login = BrokerLogin(address, f"{site}/{device}", password, ca_cert)
        self.login = login
        self._client = make_client(login, f"{site}/{device}/updater")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.suppress_exceptions = True  # a callback that raises never ends the loop
        self._host, self._port = login.address.host, login.address.port
        self._jobs: queue.Queue[Command | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"updater-{device}", daemon=True)
        self._subscribed = threading.Event()
        self.rejected = 0  # commands refused (malformed, not for us) or that failed to run
        self.last_rollout: str | None = None
        self.last_sha256: str | None = None

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> None:
        """Recover, connect and subscribe. ``wait=False`` (a device that must count even
        while the broker is away): connect in the background, retrying, and return at once."""
        crash = self.updater.recover()
        self._client.reconnect_delay_set(min_delay=1, max_delay=8)
        try:
            if wait:
                self._client.connect(self._host, self._port)
            else:
                self._client.connect_async(self._host, self._port)
        except OSError as exc:
            raise EdgeRuntimeError(describe_connect_error(exc, self.login)[0]) from None
        self._client.loop_start()
        self._worker.start()
        if wait:
            self._wait_subscribed(timeout)
        trial = self.updater.recovered  # also when the caller ran recover() before start()
        if trial is not None:
            self.updater.recovered = None
            rollout = trial.get("rollout") or self.last_rollout
            sha = trial.get("sha256") or self.last_sha256
            if rollout and sha:
                self._report(rollout, sha, "failed", crash or trial.get("reason"))

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def problem(self) -> str | None:
        """Why the last connection attempt failed, in one line (None once connected)."""
        return self._client.problem

    @property
    def fatal(self) -> bool:
        """The broker refused the login or TLS cannot succeed: retrying will not help."""
        return self._client.fatal

    def _wait_subscribed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._subscribed.wait(0.1):
            if self.fatal or time.monotonic() >= deadline:
                self.stop()
                why = self.problem or "no subscription to its cmd topic"
                raise EdgeRuntimeError(f"update agent {self.site}/{self.device}: {why}")

    def stop(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=60)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if not self._client.note_connack(rc):
            log.warning("update agent: %s", self._client.problem)
            return
        client.subscribe(self._cmd_topic, qos=1)

    def _on_disconnect(self, client: mqtt.Client, *args: object) -> None:
        self._client.note_disconnect()

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        try:
            cmd = from_json(Command, payload)
        except Exception as exc:  # WireError, or anything a hostile payload provokes
            self._refuse(payload, f"{type(exc).__name__}: {exc}")
            return
        if (cmd.site, cmd.device) != (self.site, self.device):
            self.rejected += 1
            return
        self._jobs.put(cmd)

    def _refuse(self, payload: bytes, why: str) -> None:
        """A command that does not parse: counted, logged, and reported as a failure of its
        rollout when it names one (and a bundle) for this device."""
        self.rejected += 1
        why = " ".join(why.split())[:200]
        log.warning("command refused: %s", why)
        if len(payload) > 65536:
            return
        try:
            data = json.loads(payload)
            params = data.get("params") if isinstance(data, dict) else None
            if not isinstance(params, dict) or (data.get("site"), data.get("device")) != (
                self.site,
                self.device,
            ):
                return
            rollout, sha = params.get("rollout"), params.get("sha256")
        except Exception:  # not even JSON: nothing to report it under
            return
        if isinstance(rollout, str) and isinstance(sha, str):
            self._report(rollout, sha, "failed", f"command refused: {why}")

    def _work(self) -> None:
        while (cmd := self._jobs.get()) is not None:
            try:
                self._handle(cmd)
            except Exception as exc:  # never let the worker die: report and go on
                self.rejected += 1
                log.exception("update command failed")
                rollout = str(cmd.params.get("rollout", ""))
                sha = str(cmd.params.get("sha256", self.last_sha256 or ""))
                self._report(rollout, sha, "failed", f"updater error: {exc}")

    def _handle(self, cmd: Command) -> None:
        rollout = str(cmd.params.get("rollout", ""))
        if cmd.action == UPDATE_ACTION:
            size = cmd.params.get("size")
            version = cmd.params.get("version")
            req = UpdateRequest(
                rollout_id=rollout,
                url=str(cmd.params.get("url", "")),
                sha256=str(cmd.params.get("sha256", "")),
                size=size if isinstance(size, int) and not isinstance(size, bool) else -1,
                version=str(version) if version is not None else None,
                rollback=cmd.params.get("rollback") is True,
            )
            self.last_rollout, self.last_sha256 = rollout, req.sha256
            result = self.updater.apply(req)
            self._report(rollout, req.sha256, "healthy" if result.ok else "failed", result.reason)
        elif cmd.action == ROLLBACK_ACTION and self.last_sha256:
            current = self.updater.current
            if current is None or current.name != self.last_sha256:
                return  # the bundle never became current here: nothing to roll back
            self.updater.rollback()
            self._report(rollout, self.last_sha256, "rolled_back", "rolled back on command")

    def _report(
        self, rollout: str, sha256: str, outcome: UpdateOutcome, reason: str | None
    ) -> None:
        """Publish an update report; one the fleet could not attribute (no valid rollout id or
        bundle sha256) is only logged. Never raises."""
        if not _ID.fullmatch(rollout) or not _SHA256.fullmatch(sha256):
            why = reason and _one_line(reason)
            log.warning("no report for rollout %r, bundle %r: %s", rollout[:64], sha256[:64], why)
            return
        try:
            report = UpdateReport(
                site=SiteId(self.site),
                device=DeviceId(self.device),
                rollout_id=CommandId(rollout),
                bundle_sha256=sha256,
                at=datetime.now(UTC),
                outcome=outcome,
                reason=_one_line(reason) if reason else None,
            )
            self._client.publish(self._report_topic, to_json(report), qos=1)
        except Exception:
            log.exception("update report for rollout %s could not be sent", rollout)


def _one_line(text: str) -> str:
    """At most 300 printable characters on one line (what an update report carries)."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else "?" for c in flat)[:300]
