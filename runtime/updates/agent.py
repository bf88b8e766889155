"""The device's MQTT side of updates: listens on its own cmd topic, runs the
:class:`~edgetally.runtime.updates.updater.Updater` in a worker thread, reports on its update topic.

A command is obeyed only when the fleet signed it with its bundle key (the device's pinned
key), it is addressed to this device, it was issued at most ``max_command_age_s`` ago (and
not ahead of the device's clock by more than a small skew), and its id was never seen here
before (:class:`SeenCommands`, kept beside the model slots across restarts). Anything else
(unsigned, wrong key, bad signature, malformed, mis-addressed, stale, from the future,
replayed) is logged in one line, counted in :attr:`UpdateAgent.rejected` and otherwise
ignored: no report, nothing installed or rolled back.

No command stops it: a signed command whose handling raises anything is logged and reported
as a failure of its rollout, and the agent goes on with the next one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from edgetally.models.broker_url import DEFAULT_PORT
from edgetally.models.commands import (
    DEFAULT_MAX_AGE_S,
    FUTURE_SKEW_S,
    CommandRefused,
    check_command,
    open_command,
)
from edgetally.models.topics import ID_PATTERN, DeviceId, SiteId, topic_for
from edgetally.models.wire import (
    SHA256_PATTERN,
    UPDATE_ACTION,
    Command,
    CommandId,
    UpdateOutcome,
    UpdateReport,
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
SEEN_FILE = "commands-seen.json"  # beside the model slots (the updater's root)
MAX_SEEN = 10_000  # ids kept at most (the newest), whatever the max age

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SeenCommands:
    """The ids of the signed commands this device took (obeyed, or refused while handling),
    with when the fleet issued them, in ``path`` (JSON, replaced atomically): a command whose
    id is here is a replay. An id is kept while a command issued then could still pass the
    age check (``keep_s``: the max age plus the skew allowed into the future), at most
    :data:`MAX_SEEN` of them.

    A file that cannot be read loses what it held: then no command issued before this start
    is taken (one published again could be a replay), and the log says so.
    """

    def __init__(self, path: Path, keep_s: float, now: datetime) -> None:
        self.path = path
        self._keep = timedelta(seconds=keep_s)
        self._lock = threading.Lock()
        self.floor: datetime | None = None  # commands issued before it are refused
        self._ids = self._load(now)

    def _load(self, now: datetime) -> dict[str, datetime]:
        try:
            data = json.loads(self.path.read_text())
            ids = {str(k): datetime.fromisoformat(v) for k, v in data["ids"].items()}
            if any(at.tzinfo is None for at in ids.values()):
                raise ValueError("a time without its UTC offset")
            return ids
        except FileNotFoundError:
            return {}
        except Exception as exc:  # damaged: what it held is lost
            self.floor = now
            log.warning(
                "the command ids in %s cannot be read (%s): commands issued before %s are refused",
                self.path,
                _one_line(f"{type(exc).__name__}: {exc}"),
                _iso(now),
            )
            return {}

    def remember(self, command: Command, now: datetime) -> None:
        """Record ``command``'s id, or :class:`CommandRefused` (replayed) when it was seen
        before; OSError when the file cannot be written (the id is then not taken)."""
        cid = command.command_id
        with self._lock:
            if self.floor is not None and command.at < self.floor:
                raise CommandRefused(
                    "replayed",
                    f"command {cid} was issued {_iso(command.at)}, before the ids seen on this "
                    f"device were lost ({_iso(self.floor)}): it may be a replay, not obeyed",
                )
            seen = self._ids.get(cid)
            if seen is not None:
                raise CommandRefused(
                    "replayed",
                    f"command {cid} (issued {_iso(seen)}) was taken before on this device: "
                    "a replay, not obeyed",
                )
            horizon = now - self._keep
            kept = {i: at for i, at in self._ids.items() if at >= horizon}
            kept[cid] = command.at
            if len(kept) > MAX_SEEN:
                kept = dict(sorted(kept.items(), key=lambda item: item[1])[-MAX_SEEN:])
            self._write(kept)
            self._ids = kept

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def _write(self, ids: dict[str, datetime]) -> None:
        data = {"v": 1, "ids": {i: at.isoformat() for i, at in ids.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


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
        max_command_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Clock = _utc_now,
    ) -> None:
        """``login`` (the device's, shared with its publisher), or ``host``, ``port``,
        ``password`` (user ``site/device``) and ``ca_cert`` (TLS when given). The agent logs
        in as ``site/device/updater`` with that password: a closed fleet's broker makes a
        client's id its user name, so the agent needs an account apart from the publisher's
        (``fleet broker-config`` makes it). ``max_command_age_s``: a command issued longer
        ago than this is refused as stale (by ``clock``, the device's UTC clock)."""
        if not max_command_age_s > 0:
            raise ValueError("max_command_age_s must be positive")
        self.updater = updater
        self.max_command_age_s = max_command_age_s
        self._clock = clock
        self.seen = SeenCommands(
            updater.root / SEEN_FILE, max_command_age_s + FUTURE_SKEW_S, clock()
        )
        self.site, self.device = site, device
        self._cmd_topic = topic_for(site, device, "cmd")
        self._report_topic = topic_for(site, device, "update")
        if login is None:
            address = BrokerAddress(host, port, tls=ca_cert is not None)
            login = BrokerLogin(address, f"{site}/{device}", password, ca_cert)
        client_id = f"{site}/{device}/updater"
        if login.username is not None:
            login = replace(login, username=client_id)
        self.login = login
        self._client = make_client(login, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.suppress_exceptions = True  # a callback that raises never ends the loop
        self._host, self._port = login.address.host, login.address.port
        self._jobs: queue.Queue[Command | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"updater-{device}", daemon=True)
        self._subscribed = threading.Event()
        self.rejected = 0  # commands refused (forged, stale, replayed...) or that failed to run
        self.refusals: Counter[str] = Counter()  # refused commands by check (CommandRefused.kind)
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
            cmd = self._admit(payload)
        except CommandRefused as exc:
            self._refuse(exc)
            return
        except Exception as exc:  # anything a hostile payload provokes: refused, never obeyed
            self._refuse(CommandRefused("malformed", f"{type(exc).__name__}: {exc}"))
            return
        if cmd is not None:
            self._jobs.put(cmd)

    def _admit(self, payload: bytes) -> Command | None:
        """The command in ``payload`` if this device may obey it (signed with the pinned key,
        for this device, fresh, never seen), its id then remembered; else CommandRefused, or
        None when its id could not be remembered (reported to the fleet)."""
        cmd = open_command(payload, self.updater.public_key)
        now = self._clock()
        check_command(
            cmd, site=self.site, device=self.device, now=now, max_age_s=self.max_command_age_s
        )
        try:
            self.seen.remember(cmd, now)
        except OSError as exc:  # a genuine command: the fleet hears why it was not obeyed
            why = f"cannot record command id {cmd.command_id} in {self.seen.path}: {exc}"
            self.rejected += 1
            log.error("command not obeyed: %s", _one_line(why))
            self._report(cmd.rollout, cmd.bundle_sha256, "failed", f"{why}; not obeyed")
            return None
        return cmd

    def _refuse(self, exc: CommandRefused) -> None:
        """A command not to obey: one log line and a count, nothing else (no report: what is
        unsigned, stale or replayed may not move a rollout)."""
        self.rejected += 1
        self.refusals[exc.kind] += 1
        log.warning("command refused (%s): %s", exc.kind, _one_line(str(exc)))

    def _work(self) -> None:
        while (cmd := self._jobs.get()) is not None:
            try:
                self._handle(cmd)
            except Exception as exc:  # never let the worker die: report and go on
                self.rejected += 1
                log.exception("update command failed")
                self._report(cmd.rollout, cmd.bundle_sha256, "failed", f"updater error: {exc}")

    def _handle(self, cmd: Command) -> None:
        if cmd.action == UPDATE_ACTION:
            req = UpdateRequest(
                rollout_id=cmd.rollout,
                url=cmd.url or "",
                sha256=cmd.bundle_sha256,
                size=cmd.size or -1,
                version=cmd.version,
                rollback=cmd.rollback,
            )
            self.last_rollout, self.last_sha256 = cmd.rollout, req.sha256
            result = self.updater.apply(req)
            self._report(
                cmd.rollout, req.sha256, "healthy" if result.ok else "failed", result.reason
            )
            return
        current = self.updater.current  # a rollback: of the bundle it names, if in use here
        if current is None or current.name != cmd.bundle_sha256:
            log.info(
                "rollback of bundle %s... (rollout %s): not the model in use here, nothing to "
                "roll back",
                cmd.bundle_sha256[:16],
                cmd.rollout,
            )
            return
        self.updater.rollback()
        self._report(cmd.rollout, cmd.bundle_sha256, "rolled_back", "rolled back on command")

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


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    """At most 300 printable characters on one line (what an update report carries)."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else "?" for c in flat)[:300]
