"""Soak test: a simulated fleet of devices against a real Mosquitto and an in-process fleet.

Hundreds of devices send time buckets at an accelerated clock (a 60 s bucket every 0.5-1 s
of wall time) for many minutes, while about one message in 50 is hostile, devices are
re-imaged and the broker is restarted. At the end everything is drained and the store is
checked against an exact ledger kept by the senders: nothing lost, nothing twice.

- **Broker**: its own Mosquitto on a free loopback port, persistence on (the fleet's
  persistent session and its queue survive a restart), stopped (SIGTERM) and started again
  on the same port at random times.
- **Fleet**: :class:`~edgetally.fleet.server.FleetServer` in this process (DuckDB in a
  temporary folder by default, or ``--db``); its memory is this process's RSS.
- **Devices**, in a few worker processes: one in ten by default (``--outbox-devices``) is
  a real device uplink, the runtime's SQLite :class:`Outbox` and :class:`Publisher`; the
  others publish with paho directly (QoS 1, reconnecting with backoff, unacknowledged
  messages re-sent after each reconnect), all of a worker's clients driven by one
  select() loop, not a thread each. Each bucket: an aggregate of a line, of a zone on half
  the devices, and now and then a power reading, a shelf state or audio levels.
- **Hostile** messages (``--hostile-every``): bad JSON, times that overflow when turned to
  UTC, times outside the fleet's window, a payload for another device than its topic's,
  unknown fields, and conflicting redeliveries (a key the broker already acknowledged, sent
  again with other counts).
- **Re-images**: a device's outbox file is deleted (the in-memory state of a paho device is
  reset) once what it holds has been acknowledged: a new epoch, sequences from 0 again.
- **Ledger**: every valid message a device wrote to its outbox or handed to paho, by key
  (site, device, epoch, sequence) with its counts. After the run every outbox is drained,
  then a marker message tells when ingest has processed everything before it.

``--closed``: the broker is the one ``edgetally fleet broker-config`` writes (TLS, a
password per device, the ACL, every client's id its user name), the fleet logs in with its
service accounts (``fleet`` for ingest, ``fleet-rollouts`` for rollouts) and every device
with its own login; the outbox devices send no hostile messages (they would need a second
connection with their login, which would throw their publisher off). Besides, in a process
of its own (:class:`Adversary`):

- **Update agents**: a few devices also run the runtime's :class:`UpdateAgent` (its own
  login ``site/device/updater``, commands valid ``AGENT_MAX_AGE_S``), and the fleet rolls
  a new signed bundle out to one of them every few seconds: genuine commands, each to be
  obeyed once (the rollout's device ends ``healthy``).
- **Client-id theft**: hostile device logins (accounts of their own in the broker config)
  connect again and again asking for the fleet's client ids (``edgetally-fleet``,
  ``fleet``, ``fleet-0``, ...) and other devices' (``site/device``, its updater's, the ids
  the soak's devices ask for), each time publishing aggregates on other devices' topics
  (MQTT v5: the broker's PUBACK says whether it took them) and now and then a command on
  an agent's ``cmd`` topic.
- **Forged and replayed commands**: a client with a fleet account (a leaked fleet
  password) captures the fleet's genuine commands off the broker and publishes them again
  (replayed, on another agent's topic, altered), and commands signed with a key that is
  not the fleet's (also claiming the fleet's key id) or unsigned. A command obeyed shows as
  an update report (every report is counted per device and rollout) or as a download from
  the attacker's URL.

The fleet's disconnects outside broker restarts (its log), the paho devices' too, and the
broker's "already connected, closing old connection" lines are counted; foreign aggregates
are looked for in the store and the dead letters.

Usage: python benchmarks/soak.py [--devices 200] [--minutes 10] [--hostile-every 50]
       [--db PATH|postgresql://...] [--seed N] [--json] [--outbox-devices N] [--workers N]
       [--broker-restarts N] [--reimages N] [--closed]

Exit status 1 when a message was lost or stored twice, a hostile message was neither
dead-lettered nor recorded as a conflict, or the ingest loop had an error or died; with
``--closed`` also when a fleet connection or a device was thrown off, the broker took a
foreign aggregate or a device's command, a foreign aggregate reached the fleet, a command
was obeyed that should not have been, a genuine one was not, or a forged one was neither
refused nor obeyed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import heapq
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import queue
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edgetally.models.topics import topic_for
from edgetally.models.wire import (
    Aggregate,
    AudioLevels,
    DwellStats,
    FacingCounts,
    PowerReading,
    ShelfState,
    WireModel,
    to_json,
)
from edgetally.ports import free_port

BUCKET_S = 60
TICK_S = (0.5, 1.0)  # wall seconds between two buckets of a device
HOSTILE_KINDS = (
    "bad_json",
    "time_overflow",
    "outside_window",
    "wrong_identity",
    "unknown_field",
    "conflict",
)
HOSTILE_SEQ = 10**15  # hostile messages other than conflicts use keys no device reaches
OVERFLOWING = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00")
DRAIN_S = 300.0
MARKER_TOPIC = "edgetally/v1/soak/marker/cmd"  # a kind ingest ignores: it only marks time
# --closed
HOSTILE_SITE = "soak-h"  # the hostile logins: soak-h/h-00, ...
HOSTILE_LOGINS = 4
AGENT_TARGET = "onnxruntime:fp32:soak"  # what the agents run and the soak's bundles target
AGENT_MAX_AGE_S = 60.0  # the agents' max command age: replays older than this are stale
TAKEOVER = "already connected, closing old connection"  # Mosquitto's log: an id taken over
FLEET_DROPPED = "disconnected from the broker"  # the fleet's log: a connection lost
RESTART_PAD_S = 3.0  # disconnects this close to a broker restart are the restart's
FORGED_KINDS = (
    "replayed",  # a captured genuine command, again on its own topic
    "replayed_elsewhere",  # ... on another agent's topic
    "altered",  # ... with a field changed (url, version, rollback, device)
    "wrong_key",  # signed with a key that is not the fleet's
    "spoofed_key_id",  # ... claiming the fleet's key id
    "unsigned",
)

# A message's identity: site, device, epoch, sequence space ("agg" for aggregates, audio
# and shelf, which share one counter; "power"), sequence number.
Key = tuple[str, str, str, str, int]
MODELS: dict[str, type[WireModel]] = {
    "agg": Aggregate,
    "power": PowerReading,
    "audio": AudioLevels,
    "shelf": ShelfState,
}


def space_of(kind: str) -> str:
    return "power" if kind == "power" else "agg"


def sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def rss_mb() -> float:
    """This process's resident memory (MB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- what devices send --------------------------------------------------------------------


def counts_of(kind: str, fields: dict[str, Any]) -> tuple[Any, ...]:
    """What the check compares with the store, per kind."""
    if kind == "agg":
        return (fields["in_count"], fields["out_count"])
    if kind == "power":
        return (fields["wh"],)
    if kind == "audio":
        return (fields["leq_dbfs"],)
    facings = fields["facings"]
    return (
        sum(f.facing_empty for f in facings),
        sum(f.restocked for f in facings),
        sum(f.product_taken for f in facings),
        len(facings),
    )


def bucket_messages(
    index: int, bucket: int, start: datetime, rng: random.Random
) -> list[tuple[str, dict[str, Any]]]:
    """The messages of one bucket of device ``index``: (kind, fields without identity)."""
    common = {"start": start, "seconds": BUCKET_S}
    out: list[tuple[str, dict[str, Any]]] = [
        (
            "agg",
            {
                **common,
                "source": "cam0",
                "line": "door",
                "in_count": rng.randint(0, 12),
                "out_count": rng.randint(0, 12),
            },
        )
    ]
    if index % 2 == 0:
        occupancy = round(rng.uniform(0, 5), 3)
        median = round(rng.uniform(5, 60), 2)
        visits = rng.randint(0, 4)
        out.append(
            (
                "agg",
                {
                    **common,
                    "source": "cam0",
                    "line": "till",
                    "in_count": 0,
                    "out_count": 0,
                    "occupancy_mean": occupancy,
                    "occupancy_peak": int(occupancy) + 1,
                    "dwell": DwellStats(count=visits, median_s=median, p90_s=median * 2)
                    if visits
                    else None,
                },
            )
        )
    if bucket % 10 == 0:
        wh = round(rng.uniform(0.05, 0.3), 6)
        out.append(
            (
                "power",
                {
                    **common,
                    "source": "rapl",
                    "wh": wh,
                    "mean_w": round(wh * 60, 6),
                    "measured": True,
                },
            )
        )
    if index % 4 == 1 and bucket % 3 == 0:
        facings = tuple(
            FacingCounts(
                region="top",
                facing=f"f{j}",
                facing_empty=rng.randint(0, 2),
                restocked=rng.randint(0, 1),
                product_taken=rng.randint(0, 3),
                empty_at_end=rng.random() < 0.2,
            )
            for j in range(2)
        )
        out.append(("shelf", {**common, "source": "cam0", "facings": facings}))
    if index % 4 == 2 and bucket % 2 == 0:
        leq = round(rng.uniform(-60, -20), 2)
        out.append(
            (
                "audio",
                {
                    **common,
                    "source": "mic0",
                    "duration_s": float(BUCKET_S),
                    "leq_dbfs": leq,
                    "laeq_dbfs": round(leq - 3, 2),
                    "speech_ratio": round(rng.random(), 3),
                    "events": {"speech": rng.randint(0, 5)},
                },
            )
        )
    return out


def build(kind: str, site: str, device: str, epoch: str, seq: int, fields: dict[str, Any]) -> bytes:
    model = MODELS[kind](site=site, device=device, epoch=epoch, seq=seq, **fields)
    return to_json(model)


def conflicting(kind: str, fields: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same message with other counts."""
    other = dict(fields)
    if kind == "agg":
        other["in_count"] = fields["in_count"] + rng.randint(1, 5)
    elif kind == "power":
        other["wh"] = round(fields["wh"] + 0.5, 6)
    elif kind == "audio":
        other["leq_dbfs"] = round(fields["leq_dbfs"] - 1, 2)
    else:
        first = fields["facings"][0]
        other["facings"] = (
            first.model_copy(update={"facing_empty": first.facing_empty + 1}),
            *fields["facings"][1:],
        )
    return other


def hostile_payload(
    kind: str,
    site: str,
    device: str,
    start: datetime,
    rng: random.Random,
    strangers: list[tuple[str, str]],
) -> bytes:
    """A hostile message of ``kind`` (not a conflict) on ``site/device``'s agg topic."""
    base = Aggregate(
        site=site,  # type: ignore[arg-type]
        device=device,  # type: ignore[arg-type]
        source="cam0",  # type: ignore[arg-type]
        line="door",  # type: ignore[arg-type]
        epoch=f"{rng.getrandbits(64):016x}",  # type: ignore[arg-type]
        seq=HOSTILE_SEQ + rng.randrange(10**12),  # type: ignore[arg-type]
        start=start,
        seconds=BUCKET_S,
        in_count=rng.randint(0, 9),
        out_count=rng.randint(0, 9),
    )
    raw = to_json(base)
    if kind == "bad_json":
        variant = rng.randrange(3)
        if variant == 0:
            return raw[: rng.randint(1, len(raw) - 1)]  # cut short: an unclosed object
        if variant == 1:
            return b"\xff" + rng.randbytes(rng.randint(8, 200))
        return raw.replace(b'"', b"", 1)
    d = json.loads(raw)
    if kind == "time_overflow":
        d["start"] = rng.choice(OVERFLOWING)
    elif kind == "outside_window":
        if rng.random() < 0.5:
            d["start"] = f"{rng.randint(1970, 1999)}-06-01T00:00:00Z"
        else:
            ahead = datetime.now(UTC) + timedelta(days=rng.randint(300, 400))
            d["start"] = ahead.replace(microsecond=0).isoformat()
    elif kind == "wrong_identity":
        other_site, other_device = rng.choice(strangers)
        if rng.random() < 0.5 and other_site != site:
            d["site"] = other_site
        else:
            d["device"] = other_device if other_device != device else f"{device}-x"
    else:  # unknown_field
        name = rng.choice(("frame_jpeg", "firmware", "gps", "debug"))
        d[name] = rng.randbytes(12).hex()
    return json.dumps(d, separators=(",", ":")).encode()


# -- devices (worker processes) ------------------------------------------------------------


# A closed broker's login: (user name, password, CA file).
Login = tuple[str, str, str]


class Link:
    """One paho client driven by a :class:`NetLoop` (no thread of its own); ``login``: a
    user, its password and TLS with the CA (the closed broker)."""

    def __init__(
        self,
        port: int,
        client_id: str,
        on_ack: Callable[[Any], None],
        login: Login | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if login is not None:
            user, password, ca = login
            self.client.username_pw_set(user, password)
            self.client.tls_set(ca_certs=ca)
        self.drops: list[float] = []  # when (wall clock) the connection was lost
        self.client.max_inflight_messages_set(64)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.on_ack = on_ack
        self.pending: dict[int, Any] = {}  # mid -> tag, until the PUBACK
        self.connected = False
        self.connects = 0
        self.next_try = 0.0
        self.backoff = 1.0

    def send(self, topic: str, payload: bytes, tag: Any) -> None:
        """QoS 1; while disconnected paho keeps it and sends it after the next connect."""
        info = self.client.publish(topic, payload, qos=1)
        kept = (  # the message stays queued in paho and goes out after a reconnect
            self._mqtt.MQTT_ERR_SUCCESS,
            self._mqtt.MQTT_ERR_NO_CONN,
            self._mqtt.MQTT_ERR_CONN_LOST,
        )
        if info.rc not in kept:
            raise RuntimeError(f"paho refused a publish: {self._mqtt.error_string(info.rc)}")
        self.pending[info.mid] = tag

    def ensure(self, now: float, rng: random.Random) -> None:
        """Reconnect with exponential backoff (1-8 s, jittered) when the socket is gone."""
        if self.client.socket() is not None or now < self.next_try:
            return
        try:
            self.client.reconnect()
            self.backoff = 1.0
        except OSError:
            self.next_try = now + self.backoff * rng.uniform(0.5, 1.0)
            self.backoff = min(self.backoff * 2, 8.0)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self.connected = True
            self.connects += 1

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        if self.connected:
            self.drops.append(time.time())
        self.connected = False
        self.next_try = time.monotonic() + self.backoff

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        tag = self.pending.pop(mid, None)
        if tag is not None:
            self.on_ack(tag)


class NetLoop:
    """select() over the sockets of many paho clients, in the calling thread."""

    def __init__(self, rng: random.Random) -> None:
        self.links: list[Link] = []
        self.rng = rng
        self._misc_at = 0.0

    def step(self, timeout: float) -> None:
        now = time.monotonic()
        for link in self.links:
            link.ensure(now, self.rng)
        socks = {}
        for link in self.links:
            sock = link.client.socket()
            if sock is not None:
                socks[sock] = link
        if not socks:
            time.sleep(timeout)
            return
        wanted = [s for s, link in socks.items() if link.client.want_write()]
        # TLS: bytes already decrypted wait in the socket, where select() does not see them.
        buffered = [s for s in socks if getattr(s, "pending", None) and s.pending()]
        try:
            readable, writable, _ = select.select(
                list(socks), wanted, [], 0.0 if buffered else timeout
            )
        except (OSError, ValueError):  # a socket closed under us: next round
            return
        readable = list({*readable, *buffered})
        for s in readable:
            if socks[s].client.socket() is s:
                socks[s].client.loop_read()
        for s in writable:
            if socks[s].client.socket() is s:
                socks[s].client.loop_write()
        if now - self._misc_at >= 1.0:
            self._misc_at = now
            for link in self.links:
                link.client.loop_misc()


@dataclass
class Tally:
    """What one worker sent."""

    valid: Counter[str] = field(default_factory=Counter)
    hostile: Counter[str] = field(default_factory=Counter)
    hostile_sha: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    reimages: Counter[str] = field(default_factory=Counter)


class Device:
    """What every simulated device shares: its clock, its ledger and its hostile side."""

    def __init__(self, w: Worker, index: int, site: str, device: str) -> None:
        self.w = w
        self.index, self.site, self.device = index, site, device
        self.rng = random.Random(w.seed * 100_003 + index)
        self.bucket = 0
        self.epoch = ""
        self.ledger: dict[Key, tuple[str, tuple[Any, ...]]] = {}
        # Messages a conflict may reuse: (key, kind, fields), newest last.
        self.recent: deque[tuple[Key, str, dict[str, Any]]] = deque(maxlen=64)
        self.want_reimage = 0
        self.busy = False
        self.sends_hostile = True

    def start_of(self, bucket: int) -> datetime:
        return self.w.t0 + timedelta(seconds=BUCKET_S * bucket)

    def tick(self) -> None:
        messages = bucket_messages(self.index, self.bucket, self.start_of(self.bucket), self.rng)
        self.emit(messages)
        self.bucket += 1
        every = self.w.hostile_every if self.sends_hostile else 0
        for _ in messages:
            if every and self.rng.random() < 1.0 / every:
                self.hostile()

    def hostile(self) -> None:
        kind = self.rng.choice(HOSTILE_KINDS)
        target = self.conflict_target() if kind == "conflict" else None
        if kind == "conflict" and target is None:
            kind = "unknown_field"  # nothing acknowledged yet to conflict with
        if target is not None:
            key, mkind, fields = target
            site, device, epoch, _space, seq = key
            payload = build(mkind, site, device, epoch, seq, conflicting(mkind, fields, self.rng))
            topic = topic_for(site, device, mkind)  # type: ignore[arg-type]
        else:
            start = self.start_of(self.bucket)
            payload = hostile_payload(
                kind, self.site, self.device, start, self.rng, self.w.strangers
            )
            topic = topic_for(self.site, self.device, "agg")
        self.w.tally.hostile[kind] += 1
        self.w.tally.hostile_sha[kind].add(sha(payload))
        self.send_hostile(topic, payload, kind)

    def record(self, key: Key, kind: str, fields: dict[str, Any]) -> None:
        self.ledger[key] = (kind, counts_of(kind, fields))
        self.w.tally.valid[kind] += 1

    # Subclasses: how messages leave.
    def emit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def send_hostile(self, topic: str, payload: bytes, kind: str) -> None:
        raise NotImplementedError

    def conflict_target(self) -> tuple[Key, str, dict[str, Any]] | None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def waiting(self) -> int:
        raise NotImplementedError

    def waiting_keys(self) -> list[Key]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirectDevice(Device):
    """Publishes with paho directly; paho's session queue is its (in-memory) outbox."""

    def __init__(self, w: Worker, index: int, site: str, device: str) -> None:
        super().__init__(w, index, site, device)
        from edgetally.runtime.uplink.outbox import new_epoch

        self._new_epoch = new_epoch
        self.epoch = new_epoch()
        self.seq = {"agg": 0, "power": 0}
        self.link = Link(w.port, f"soak-{site}-{device}", self._acked, w.login_of(site, device))
        w.net.links.append(self.link)

    def emit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, fields in messages:
            space = space_of(kind)
            seq = self.seq[space]
            self.seq[space] = seq + 1
            key: Key = (self.site, self.device, self.epoch, space, seq)
            payload = build(kind, self.site, self.device, self.epoch, seq, fields)
            self.record(key, kind, fields)
            topic = topic_for(self.site, self.device, kind)  # type: ignore[arg-type]
            self.link.send(topic, payload, (key, kind, fields))

    def _acked(self, tag: Any) -> None:
        if isinstance(tag, tuple):
            self.recent.append(tag)

    def send_hostile(self, topic: str, payload: bytes, kind: str) -> None:
        self.link.send(topic, payload, kind)

    def conflict_target(self) -> tuple[Key, str, dict[str, Any]] | None:
        return self.rng.choice(self.recent) if self.recent else None

    def step(self) -> None:
        if self.want_reimage and not self.link.pending and self.link.connected:
            # Re-imaged once everything it sent is acknowledged: a new epoch, seq from 0.
            self.epoch = self._new_epoch()
            self.seq = {"agg": 0, "power": 0}
            self.want_reimage -= 1
            self.w.tally.reimages["direct"] += 1
        self.tick()

    def waiting(self) -> int:
        return len(self.link.pending)

    def waiting_keys(self) -> list[Key]:
        return [tag[0] for tag in self.link.pending.values() if isinstance(tag, tuple)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.link.client.disconnect()


class OutboxDevice(Device):
    """A device's real uplink: the runtime's SQLite outbox and its publisher."""

    def __init__(self, w: Worker, index: int, site: str, device: str) -> None:
        super().__init__(w, index, site, device)
        self.path = w.root / "outboxes" / f"{site}-{device}.db"
        self.retry_at = 0.0
        self.connects = 0  # of publishers already stopped
        self.opened = 0
        self._thread: threading.Thread | None = None
        # On a closed broker its hostile messages would need a second connection with its
        # login, which would throw its publisher off: none there.
        self.sends_hostile = w.raw is not None
        self._open()

    def _open(self) -> None:
        from edgetally.runtime.uplink.broker import BrokerAddress, BrokerLogin
        from edgetally.runtime.uplink.outbox import Outbox
        from edgetally.runtime.uplink.publisher import Publisher

        self.outbox = Outbox(self.path)
        self.epoch = self.outbox.epoch
        self.opened += 1
        login = self.w.login_of(self.site, self.device)
        broker: Any = f"mqtt://127.0.0.1:{self.w.port}"
        if login is not None:
            user, password, ca = login
            address = BrokerAddress("127.0.0.1", self.w.port, tls=True)
            broker = BrokerLogin(address, user, password, Path(ca))
        self.publisher = Publisher(self.outbox, broker, site=self.site, device=self.device)
        self.publisher.start()

    def emit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for space in ("agg", "power"):
            items = [(k, f) for k, f in messages if space_of(k) == space]
            if not items:
                continue
            builders = [
                (
                    topic_for(self.site, self.device, kind),  # type: ignore[arg-type]
                    lambda seq, epoch, kind=kind, fields=fields: build(
                        kind, self.site, self.device, epoch, seq, fields
                    ),
                )
                for kind, fields in items
            ]
            seqs = self.outbox.put_many(builders, sequence=space)
            for (kind, fields), seq in zip(items, seqs, strict=True):
                key: Key = (self.site, self.device, self.epoch, space, seq)
                self.record(key, kind, fields)
                self.recent.append((key, kind, fields))
        self.publisher.wake()

    def send_hostile(self, topic: str, payload: bytes, kind: str) -> None:
        self.w.raw.send(topic, payload, kind)  # never through its outbox: no seq to spend

    def _pending_keys(self) -> set[Key]:
        return {
            (
                self.site,
                self.device,
                self.epoch,
                "power" if r.topic.endswith("/power") else "agg",
                int(r.seq or 0),
            )
            for r in self.outbox.pending(limit=100_000)
        }

    def conflict_target(self) -> tuple[Key, str, dict[str, Any]] | None:
        waiting = self._pending_keys()  # rows not deleted are not acknowledged yet
        done = [m for m in self.recent if m[0] not in waiting]
        return self.rng.choice(done) if done else None

    def step(self) -> None:
        if self.busy:
            return
        if self.want_reimage and time.monotonic() >= self.retry_at:
            self.busy = True
            self._thread = threading.Thread(target=self._reimage, daemon=True)
            self._thread.start()
            return
        self.tick()

    def _reimage(self) -> None:
        """Delete the outbox file once it is drained; a new one makes a new epoch."""
        try:
            if self.publisher.drain(timeout=20.0):
                self.retry_at = time.monotonic() + 5.0  # the broker is away: later
                return
            self.connects += self.publisher.connects
            self.publisher.stop()
            self.outbox.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._open()
            self.want_reimage -= 1
            self.w.tally.reimages["outbox"] += 1
        finally:
            self.busy = False

    def waiting(self) -> int:
        if self.busy:
            return 1
        return self.publisher.drain(timeout=0.0)

    def waiting_keys(self) -> list[Key]:
        return sorted(self._pending_keys())

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.connects += self.publisher.connects
        self.publisher.stop()
        self.outbox.close()


class Worker:
    """Runs a share of the devices in one process."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.index: int = cfg["index"]
        self.seed: int = cfg["seed"]
        self.port: int = cfg["port"]
        self.root = Path(cfg["root"])
        self.t0 = datetime.fromisoformat(cfg["t0"])
        self.hostile_every: int = cfg["hostile_every"]
        self.rng = random.Random(self.seed * 7919 + self.index)
        self.tally = Tally()
        self.net = NetLoop(self.rng)
        # --closed: every device logs in as itself (its password from credentials.json).
        closed = cfg.get("closed")
        self.passwords: dict[str, str] | None = None
        self.ca = ""
        self.raw: Link | None = None
        if closed:
            creds = json.loads(Path(closed["credentials"]).read_text())
            self.passwords, self.ca = creds["devices"], closed["ca"]
        else:
            self.raw = Link(self.port, f"soak-raw-{self.index}", lambda _tag: None)
            self.net.links.append(self.raw)
        self.strangers: list[tuple[str, str]] = cfg["strangers"]
        self.devices: list[Device] = []
        for index, site, device, with_outbox in cfg["devices"]:
            cls = OutboxDevice if with_outbox else DirectDevice
            self.devices.append(cls(self, index, site, device))

    def login_of(self, site: str, device: str) -> Login | None:
        """The device's login on the closed broker (None on the open one)."""
        if self.passwords is None:
            return None
        user = f"{site}/{device}"
        return user, self.passwords[user], self.ca

    def connect(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(link.connected for link in self.net.links):
            if time.monotonic() > deadline:
                raise RuntimeError("the devices could not connect to the broker")
            self.net.step(0.05)

    def run(self, stop: Any) -> None:
        start = time.monotonic()
        due = [(start + self.rng.uniform(0, TICK_S[1]), i) for i in range(len(self.devices))]
        heapq.heapify(due)
        plan = self._reimage_plan(start)
        while not stop.is_set():
            now = time.monotonic()
            while due and due[0][0] <= now:
                at, i = heapq.heappop(due)
                self.devices[i].step()
                heapq.heappush(due, (max(at + self.rng.uniform(*TICK_S), now), i))
            while plan and plan[0][0] <= now:
                self.devices[plan.pop(0)[1]].want_reimage += 1
            self.net.step(min(0.05, max(0.0, due[0][0] - time.monotonic())))

    def _reimage_plan(self, start: float) -> list[tuple[float, int]]:
        seconds = self.cfg["seconds"]
        outbox = [i for i, d in enumerate(self.devices) if isinstance(d, OutboxDevice)]
        plan = []
        for n in range(self.cfg["reimages"]):
            i = (
                outbox[n % len(outbox)]
                if outbox and n % 2 == 0
                else self.rng.randrange(len(self.devices))
            )
            plan.append((start + self.rng.uniform(0.05, 0.85) * seconds, i))
        return sorted(plan)

    def finish(self) -> dict[str, Any]:
        """Drain every outbox (and paho's queues), stop, write the ledger; a summary."""
        deadline = time.monotonic() + DRAIN_S
        raw_pending: dict[int, Any] = self.raw.pending if self.raw is not None else {}
        while True:
            waiting = sum(d.waiting() for d in self.devices) + len(raw_pending)
            if waiting == 0 or time.monotonic() > deadline:
                break
            self.net.step(0.05)
        left = [k for d in self.devices for k in d.waiting_keys()]
        drops = [t for link in self.net.links if link is not self.raw for t in link.drops]
        left_hostile = len(raw_pending) + sum(
            1
            for d in self.devices
            if isinstance(d, DirectDevice)
            for tag in d.link.pending.values()
            if not isinstance(tag, tuple)
        )
        for d in self.devices:
            d.close()
        if self.raw is not None:
            self.raw.client.disconnect()
        for _ in range(5):
            self.net.step(0.02)
        ledger = [(k, v) for d in self.devices for k, v in d.ledger.items()]
        path = self.root / f"ledger-{self.index}.pickle"
        path.write_bytes(pickle.dumps({"ledger": ledger, "waiting": left}))
        t = self.tally
        reconnects = sum(max(0, link.connects - 1) for link in self.net.links) + sum(
            max(0, d.connects - d.opened) for d in self.devices if isinstance(d, OutboxDevice)
        )
        return {
            "ledger": str(path),
            "valid": dict(t.valid),
            "hostile": dict(t.hostile),
            "hostile_sha": {k: sorted(v) for k, v in t.hostile_sha.items()},
            "reimages": dict(t.reimages),
            "reimages_not_done": sum(d.want_reimage for d in self.devices),
            "waiting": len(left),
            "hostile_waiting": left_hostile,
            "reconnects": reconnects,
            "drops": drops,
        }


def run_worker(cfg: dict[str, Any], go: Any, stop: Any, out: Any) -> None:
    """A worker process: connect its devices, run them until ``stop``, drain, report."""
    logging.basicConfig(level=logging.CRITICAL)
    try:
        w = Worker(cfg)
        w.connect()
        out.put(("ready", cfg["index"], None))
        go.wait()
        w.run(stop)
        out.put(("done", cfg["index"], w.finish()))
    except BaseException:
        out.put(("error", cfg["index"], traceback.format_exc()))


# -- the broker and the fleet (this process) -----------------------------------------------


class Mosquitto:
    """A Mosquitto with persistence on a free loopback port, to stop and start again;
    ``closed``: the one ``edgetally fleet broker-config`` wrote into that folder, on
    ``port`` (see :func:`closed_broker`)."""

    def __init__(self, root: Path, closed: Path | None = None, port: int = 0) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise SystemExit("soak: mosquitto is missing (Debian's package mosquitto)")
        self.exe = exe
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if closed is not None:
            self.port = port
            self.data = closed / "data"
            self.conf = closed / "mosquitto.conf"
            return
        self.port = free_port()
        self.data = root / "mosquitto-data"
        self.data.mkdir()
        self.conf = root / "mosquitto.conf"
        # Started as root, Mosquitto drops to its own user, who could not write the
        # persistence into this private folder.
        run_as = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{run_as}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.data}/\n"
            "max_queued_messages 100000\n"
        )

    def takeovers(self) -> int:
        """How often a connection took a connected client's id, which closed the older one."""
        try:
            return self.log.read_text(errors="replace").count(TAKEOVER)
        except OSError:
            return 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"soak: mosquitto did not start (see {self.log})") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


class Watch(threading.Thread):
    """Samples the fleet every second: memory, the ingest thread, and progress lines."""

    def __init__(self, fleet: Any, quiet: bool) -> None:
        super().__init__(name="soak-watch", daemon=True)
        self.fleet, self.quiet = fleet, quiet
        self.stop = threading.Event()
        self.peak = rss_mb()
        self.ingest_threads: set[int] = set()
        self.down_samples = 0
        self.t0 = time.monotonic()

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb())
        alive = [t for t in threading.enumerate() if t.name == "fleet-ingest" and t.is_alive()]
        self.ingest_threads.update(t.ident or 0 for t in alive)
        if not alive or not self.fleet.counters().running:
            self.down_samples += 1

    def run(self) -> None:
        n = 0
        while not self.stop.wait(1.0):
            self.sample()
            n += 1
            if not self.quiet and n % 30 == 0:
                k = self.fleet.counters()
                print(
                    f"soak: {time.monotonic() - self.t0:6.0f} s  received {k.received:,}  "
                    f"new {k.aggregates_new + k.power_new + k.audio_new + k.shelf_new:,}  "
                    f"dead {k.dead_letters:,}  queue {k.queue_depth}  RSS {rss_mb():.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )

    @property
    def restarts(self) -> int:
        return max(0, len(self.ingest_threads) - 1)


def classify(reason: str) -> str:
    """A dead letter's reason, in a few classes."""
    if reason.startswith("conflict:"):
        return "conflict"
    for needle, name in (
        ("Invalid JSON", "bad_json"),
        ("time is out of range", "time_overflow"),
        ("(the receiving fleet's window)", "outside_window"),
        ("ahead of the receiving clock", "outside_window"),
        ("came on the topic of", "wrong_identity"),
        ("Extra inputs are not permitted", "unknown_field"),
        ("unexpected error", "unexpected_error"),
    ):
        if needle in reason:
            return name
    return "other"


def stored_messages(store: Any) -> dict[Key, list[tuple[str, tuple[Any, ...]]]]:
    """Every stored message by key, with the same counts the ledger keeps."""
    out: dict[Key, list[tuple[str, tuple[Any, ...]]]] = defaultdict(list)
    queries = (
        ("agg", "SELECT site, device, epoch, seq, in_count, out_count FROM aggregates"),
        ("power", "SELECT site, device, epoch, seq, wh FROM power"),
        ("audio", "SELECT site, device, epoch, seq, leq_dbfs FROM audio"),
        (
            "shelf",
            "SELECT site, device, epoch, seq, sum(facing_empty), sum(restocked), "
            "sum(product_taken), count(*) FROM shelf GROUP BY site, device, epoch, seq",
        ),
    )
    for kind, text in queries:
        for row in store.fetch(text).rows:
            site, device, epoch, seq, *counts = row
            values = tuple(c if isinstance(c, float) else int(c) for c in counts)
            out[(site, device, epoch, space_of(kind), int(seq))].append((kind, values))
    return out


def scalar(store: Any, text: str) -> int:
    rows = store.fetch(text).rows
    return int(rows[0][0] or 0) if rows else 0


def check(
    store: Any,
    ledger: dict[Key, tuple[str, tuple[Any, ...]]],
    waiting: set[Key],
    hostile_sha: dict[str, set[str]],
) -> dict[str, Any]:
    """Compare the store with the ledger and the dead letters with the hostile messages."""
    stored = stored_messages(store)
    missing = mismatched = 0
    examples: list[str] = []
    ledger_in = ledger_out = stored_in = stored_out = 0
    for key, (kind, counts) in ledger.items():
        if kind == "agg":
            ledger_in += counts[0]
            ledger_out += counts[1]
        if key in waiting:
            continue
        got = stored.get(key)
        if not got:
            missing += 1
            if len(examples) < 5:
                examples.append(f"missing {key} {kind} {counts}")
        elif got[0] != (kind, counts):
            mismatched += 1
            if len(examples) < 5:
                examples.append(f"stored {key} as {got[0]}, sent {kind} {counts}")
    twice = unexpected = 0
    per_key = Counter()
    for key, got in stored.items():
        per_key[len(got)] += 1
        for kind, counts in got:
            if kind == "agg":
                stored_in += counts[0]
                stored_out += counts[1]
        if len(got) > 1:
            twice += 1
            if len(examples) < 10:
                examples.append(f"stored {len(got)} times: {key} {got}")
        if key not in ledger:
            unexpected += 1
            if len(examples) < 10:
                examples.append(f"stored but never sent: {key} {got}")
    rows = store.fetch("SELECT reason, payload_sha256 FROM dead_letters").rows
    dead_rows: Counter[str] = Counter()
    dead_sha: dict[str, set[str]] = defaultdict(set)
    for reason, digest in rows:
        name = classify(str(reason))
        dead_rows[name] += 1
        dead_sha[name].add(str(digest))
    unaccounted = {
        kind: len(shas - dead_sha.get(kind, set()))
        for kind, shas in hostile_sha.items()
        if shas - dead_sha.get(kind, set())
    }
    tables = ("aggregates", "events", "power", "audio", "shelf", "dead_letters", "devices")
    return {
        "stored": {
            "messages": sum(len(g) for g in stored.values()),
            "keys": len(stored),
            "messages_per_key": {str(n): c for n, c in sorted(per_key.items())},
            "rows": {t: scalar(store, f"SELECT count(*) FROM {t}") for t in tables},
        },
        "lost": missing + mismatched,
        "lost_missing": missing,
        "lost_other_counts": mismatched,
        "duplicated": twice + unexpected,
        "duplicated_keys": twice,
        "stored_not_sent": unexpected,
        "totals": {
            "ledger_in": ledger_in,
            "stored_in": stored_in,
            "ledger_out": ledger_out,
            "stored_out": stored_out,
        },
        "dead_letters": {
            "rows": sum(dead_rows.values()),
            "by_reason": dict(sorted(dead_rows.items())),
            "distinct_payloads_by_reason": {k: len(v) for k, v in sorted(dead_sha.items())},
        },
        "hostile_unaccounted": unaccounted,
        "hostile_distinct": {k: len(v) for k, v in hostile_sha.items()},
        "devices_conflicts": scalar(store, "SELECT sum(conflicts) FROM devices"),
        "examples": examples,
    }


# -- a closed fleet (--closed) -------------------------------------------------------------


def hostile_logins() -> list[str]:
    """The hostile devices' logins: accounts of their own in the broker configuration."""
    return [f"{HOSTILE_SITE}/h-{i:02d}" for i in range(HOSTILE_LOGINS)]


def closed_broker(root: Path, port: int, specs: list[tuple[int, str, str, bool]]) -> Path:
    """``edgetally fleet broker-config`` for the soak's devices and the hostile logins, as a
    user runs it; returns the folder it wrote."""
    out = root / "broker"
    devices = [f"{site}/{device}" for _i, site, device, _o in specs] + hostile_logins()
    command = [
        sys.executable,
        "-m",
        "edgetally",
        "fleet",
        "broker-config",
        "--out",
        str(out),
        "--devices",
        ",".join(devices),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
    ]
    if os.geteuid() == 0:  # started as root, Mosquitto drops to this user
        import getpass

        command += ["--run-as", getpass.getuser()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"soak: fleet broker-config failed: {done.stderr.strip()}")
    return out


def _healthy(_slot: Path, _manifest: Any, _old: Path | None) -> Any:
    """The agents' health check: the soak's bundles hold no real model."""
    from edgetally.runtime.updates.health import HealthResult

    return HealthResult(True)


class Trap:
    """The attacker's web server: a device that obeyed a forged command would fetch the
    bundle here, its token in the request. Every request is counted, each answered 404."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = 0
        lock = threading.Lock()
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    trap.requests += 1
                self.send_error(404)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Capture:
    """A genuine command of the fleet, as captured off the broker."""

    topic: str
    payload: bytes
    command: dict[str, Any]


class Adversary:
    """``--closed``, in a process of its own: the update agents, the hostile device logins
    (client-id thieves publishing on foreign topics) and a client with a fleet account (a
    leaked fleet password) that captures the fleet's commands, replays and forges them.
    Counts what the broker answered and every update report the agents sent."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from edgetally.models.bundle import key_id, load_public_key

        self.cfg = cfg
        self.port: int = cfg["port"]
        self.ca: str = cfg["ca"]
        creds = json.loads(Path(cfg["credentials"]).read_text())
        self.passwords: dict[str, str] = creds["devices"]
        self.fleet_password: str = creds["fleet"]["password"]
        self.rng = random.Random(cfg["seed"] * 7907 + 17)
        self.t0 = datetime.fromisoformat(cfg["t0"])
        self.stop = threading.Event()  # the thieves'
        self.pubkey = load_public_key(Path(cfg["pubkey"]))
        self.fleet_key_id = key_id(self.pubkey)
        self.test_key = Ed25519PrivateKey.generate()  # not the fleet's
        self.agents_at: list[tuple[str, str]] = [tuple(a) for a in cfg["agents"]]  # type: ignore[misc]
        self.victims: list[tuple[str, str]] = [tuple(v) for v in cfg["victims"]]  # type: ignore[misc]
        self.updaters: list[Any] = []
        self.agents: list[Any] = []  # the running agent of each agent device
        self.retired: list[Any] = []  # agents stopped (restarted): their refusals still count
        self.agent_restarts = 0
        self.trap = Trap()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # the thieves'
        self.foreign_epochs: set[str] = set()
        self.foreign_shas: set[str] = set()
        self.forged: Counter[str] = Counter()  # forged commands the broker took, by kind
        self.forged_unacked = 0
        self.captures: list[Capture] = []
        self.captured_ids: set[str] = set()
        self.own: set[str] = set()  # what the spy published itself (it reads it back)
        self.reports: Counter[tuple[str, str]] = Counter()  # (site/device, rollout) -> reports
        self.outcomes: Counter[str] = Counter()
        self.n = 0
        self.spy: Any = None
        self.spy_up = threading.Event()  # connected and subscribed
        self.probes_lost = 0  # probes that found their agent away (see probe_agents)

    # -- setting up

    def start(self) -> None:
        from edgetally.models.bundle import BundleTarget
        from edgetally.runtime.updates.updater import Updater

        target = BundleTarget.parse(AGENT_TARGET)
        root = Path(self.cfg["root"]) / "agents"
        for site, device in self.agents_at:
            self.updaters.append(
                Updater(
                    root / f"{site}-{device}",
                    self.pubkey,
                    target,
                    _healthy,
                    token=self.cfg["token"],
                    fleet_host="127.0.0.1",
                    https_only=True,
                )
            )
            self.agents.append(self._agent(len(self.agents)))
        self._start_spy()

    def _agent(self, i: int) -> Any:
        from edgetally.runtime.updates.agent import UpdateAgent

        site, device = self.agents_at[i]
        agent = UpdateAgent(
            self.updaters[i],
            site,
            device,
            port=self.port,
            password=self.passwords[f"{site}/{device}"],
            ca_cert=Path(self.ca),
            max_command_age_s=AGENT_MAX_AGE_S,
        )
        agent.start(timeout=60.0)
        return agent

    def restart_agent(self, i: int) -> None:
        """Stop agent ``i`` and start another on the same models folder (its seen ids)."""
        old = self.agents[i]
        old.stop()
        self.retired.append(old)
        self.agents[i] = self._agent(i)
        self.agent_restarts += 1

    def _start_spy(self) -> None:
        import paho.mqtt.client as mqtt
        from edgetally.models.topics import subscription

        user = self.cfg["spy"]
        subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=user,
            clean_session=False,
            protocol=mqtt.MQTTv311,  # the broker keeps what it missed
        )
        client.username_pw_set(user, self.fleet_password)
        client.tls_set(ca_certs=self.ca)

        def connected(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if not rc.is_failure:
                c.subscribe([(subscription("cmd"), 1), (subscription("update"), 1)])

        client.on_connect = connected
        client.on_disconnect = lambda *_a: self.spy_up.clear()
        client.on_subscribe = lambda *_a: (subscribed.set(), self.spy_up.set())
        client.on_message = self._spied
        client.reconnect_delay_set(min_delay=1, max_delay=4)
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        if not subscribed.wait(30):
            raise RuntimeError(f"the spy (fleet account {user}) could not subscribe")
        self.spy = client

    def _spied(self, _c: Any, _u: Any, msg: Any) -> None:
        """Capture the fleet's genuine commands; count every update report."""
        payload = bytes(msg.payload)
        parts = msg.topic.split("/")
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict) or len(parts) != 5:
            return
        if parts[4] == "update":
            with self.lock:
                self.reports[(f"{parts[2]}/{parts[3]}", str(data.get("rollout_id")))] += 1
                self.outcomes[str(data.get("outcome"))] += 1
        elif parts[4] == "cmd" and sha(payload) not in self.own:
            cid = str(data.get("command_id"))
            if data.get("key_id") == self.fleet_key_id and cid not in self.captured_ids:
                with self.lock:
                    self.captured_ids.add(cid)
                    self.captures.append(Capture(msg.topic, payload, data))

    # -- the attacks

    def _command(self, rng: random.Random, site: str, device: str, rollout: str) -> Any:
        """An update command signed with a key that is not the fleet's; obeyed, it would
        fetch its bundle from the trap."""
        from edgetally.models.commands import sign_command

        digest = rng.randbytes(32).hex()
        return sign_command(
            self.test_key,
            site=site,
            device=device,
            action="update",
            rollout=rollout,
            bundle_sha256=digest,
            version=str(10**6 + rng.randrange(10**6)),
            url=f"{self.trap.url}/bundles/{digest}",
            size=4096,
        )

    def forgery(
        self, kind: str, captures: list[Capture], to: tuple[str, str] | None = None
    ) -> tuple[str, bytes]:
        """(topic, payload) of a forged or replayed command of ``kind`` (to a random agent,
        or ``to``, for those made from nothing)."""
        rng = self.rng
        self.n += 1
        if kind in ("wrong_key", "spoofed_key_id", "unsigned"):
            site, device = to or rng.choice(self.agents_at)
            cmd = self._command(rng, site, device, f"soak-forged-{self.n}")
            if kind == "spoofed_key_id":
                cmd = cmd.model_copy(update={"key_id": self.fleet_key_id})
            payload = to_json(cmd)
            if kind == "unsigned":
                data = json.loads(payload)
                del data["sig"]
                payload = json.dumps(data, separators=(",", ":")).encode()
            return topic_for(site, device, "cmd"), payload
        cap = rng.choice(captures)
        site, device = cap.command["site"], cap.command["device"]
        others = [a for a in self.agents_at if a != (site, device)]
        if kind == "replayed":
            return cap.topic, cap.payload
        if kind == "replayed_elsewhere":
            return topic_for(*rng.choice(others), "cmd"), cap.payload  # type: ignore[misc]
        data = dict(cap.command)  # altered: the signature no longer holds
        topic = cap.topic
        change = rng.choice(("url", "version", "rollback", "device") if others else ("url",))
        if change == "url":
            data["url"] = f"{self.trap.url}/bundles/{data['bundle_sha256']}"
        elif change == "version":
            data["version"] = str(10**6 + self.n)
        elif change == "rollback":
            data["rollback"] = True
        else:
            data["site"], data["device"] = rng.choice(others)
            topic = topic_for(data["site"], data["device"], "cmd")
        return topic, json.dumps(data, separators=(",", ":")).encode()

    def forge(self) -> None:
        """Publish one forged or replayed command with the fleet account."""
        with self.lock:
            captures = list(self.captures)
        kinds, weights = ["wrong_key", "spoofed_key_id", "unsigned"], [1, 1, 1]
        if captures:
            kinds += ["replayed", "altered"]
            weights += [3, 2]
            if len(self.agents_at) > 1:
                kinds.append("replayed_elsewhere")
                weights.append(1)
        kind = self.rng.choices(kinds, weights)[0]
        if self._publish(*self.forgery(kind, captures)):
            self.forged[kind] += 1
        else:
            self.forged_unacked += 1

    def _publish(self, topic: str, payload: bytes) -> bool:
        """Publish with the spy (QoS 1); whether the broker took it."""
        self.own.add(sha(payload))
        if not self.spy_up.wait(30.0):  # back from a broker restart
            raise RuntimeError("the spy lost the broker for 30 s")
        info = self.spy.publish(topic, payload, qos=1)
        with contextlib.suppress(Exception):
            info.wait_for_publish(5.0)
            return bool(info.is_published())
        return False

    def probe_agents(self) -> None:
        """After a broker restart, until every agent is back: an unsigned command to each,
        again until it is refused. A command to an agent not yet subscribed again is dropped
        by the broker (its session ends with the connection), so a probe that found its
        agent away is not counted as sent; a refused one counts as an unsigned command."""
        for i, target in enumerate(self.agents_at):
            deadline = time.monotonic() + 120.0
            while not self._probe(i, target):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agent {target[0]}/{target[1]} is not back after 120 s")

    def _probe(self, i: int, target: tuple[str, str]) -> bool:
        before = sum(self.agents[i].refusals.values())
        if not self._publish(*self.forgery("unsigned", [], to=target)):
            return False
        waited = time.monotonic()
        while time.monotonic() - waited < 10.0:
            if sum(self.agents[i].refusals.values()) > before:
                self.forged["unsigned"] += 1
                return True
            time.sleep(0.05)
        self.probes_lost += 1
        return False

    def foreign(self, site: str, device: str, rng: random.Random) -> tuple[bytes, str]:
        """An aggregate for ``site/device`` (a valid one, with a key no device reaches)."""
        epoch = f"{rng.getrandbits(64):016x}"
        agg = Aggregate(
            site=site,  # type: ignore[arg-type]
            device=device,  # type: ignore[arg-type]
            source="cam0",  # type: ignore[arg-type]
            line="door",  # type: ignore[arg-type]
            epoch=epoch,  # type: ignore[arg-type]
            seq=HOSTILE_SEQ + rng.randrange(10**12),  # type: ignore[arg-type]
            start=self.t0 + timedelta(seconds=BUCKET_S * rng.randrange(2000)),
            seconds=BUCKET_S,
            in_count=rng.randint(0, 9),
            out_count=rng.randint(0, 9),
        )
        return to_json(agg), epoch

    def thief(self, i: int, user: str) -> None:
        """Log in as ``user`` again and again asking for a fleet connection's or another
        device's client id; each time publish aggregates on other devices' topics (MQTT v5:
        the PUBACK says whether the broker took them), now and then a command."""
        import paho.mqtt.client as mqtt

        rng = random.Random(self.cfg["seed"] * 7919 + 1000 + i)
        counts: Counter[str] = Counter()
        epochs: set[str] = set()
        shas: set[str] = set()
        password = self.passwords[user]
        while not self.stop.is_set():
            of_fleet = rng.random() < 0.5
            stolen = rng.choice(self.cfg["fleet_ids"] if of_fleet else self.cfg["device_ids"])
            client = mqtt.Client(
                callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                client_id=stolen,
                protocol=mqtt.MQTTv5,
            )
            client.username_pw_set(user, password)
            client.tls_set(ca_certs=self.ca)
            up = threading.Event()
            acks: dict[int, int] = {}
            client.on_connect = lambda _c, _u, _f, rc, _p, up=up: (
                None if rc.is_failure else up.set()
            )
            client.on_publish = lambda _c, _u, mid, rc, _p, acks=acks: acks.__setitem__(
                mid, rc.value
            )
            try:
                client.connect("127.0.0.1", self.port, keepalive=30, clean_start=rng.random() < 0.5)
            except OSError:  # the broker is restarting
                counts["theft_logins_failed"] += 1
                self.stop.wait(1.0)
                continue
            client.loop_start()
            try:
                if not up.wait(5.0):
                    counts["theft_logins_failed"] += 1
                    continue
                counts["thefts_of_fleet_ids" if of_fleet else "thefts_of_device_ids"] += 1
                sent: dict[int, str] = {}
                for _ in range(rng.randint(1, 4)):
                    site, device = rng.choice(self.victims)
                    payload, epoch = self.foreign(site, device, rng)
                    epochs.add(epoch)
                    shas.add(sha(payload))
                    topic = topic_for(site, device, "agg")
                    sent[client.publish(topic, payload, qos=1).mid] = "foreign"
                if rng.random() < 0.3:
                    site, device = rng.choice(self.agents_at)
                    cmd = self._command(rng, site, device, f"soak-thief-{i}-{rng.randrange(10**9)}")
                    topic = topic_for(site, device, "cmd")
                    sent[client.publish(topic, to_json(cmd), qos=1).mid] = "device_command"
                deadline = time.monotonic() + 5.0
                while len(sent.keys() & acks.keys()) < len(sent) and time.monotonic() < deadline:
                    time.sleep(0.02)
                for mid, what in sent.items():
                    code = acks.get(mid)
                    counts[f"{what}_publishes"] += 1
                    if code is None:
                        counts[f"{what}_unanswered"] += 1
                    else:
                        counts[f"{what}_{'refused' if code >= 0x80 else 'accepted'}"] += 1
                self.stop.wait(rng.uniform(0.2, 1.5))  # it holds the id a while
            finally:
                client.disconnect()
                client.loop_stop()
            self.stop.wait(rng.uniform(0.1, 0.8))
        with self.lock:
            self.counts.update(counts)
            self.foreign_epochs |= epochs
            self.foreign_shas |= shas

    # -- the run

    def refusals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for agent in self.agents + self.retired:
            out.update(agent.refusals)
        return out

    def settle(self, timeout: float) -> None:
        """Until every forged command the broker took was refused (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while sum(self.refusals().values()) < sum(self.forged.values()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def run(self, stop: Any, hold: Any, held: Any) -> dict[str, Any]:
        thieves = [
            threading.Thread(target=self.thief, args=(i, user), daemon=True)
            for i, user in enumerate(self.cfg["hostile"])
        ]
        for t in thieves:
            t.start()
        turn = 0
        while not stop.is_set():
            if hold.is_set():  # the broker is about to restart: settle, restart an agent
                self.settle(15.0)
                if self.agents:
                    self.restart_agent(turn % len(self.agents))
                    turn += 1
                held.set()
                while hold.is_set() and not stop.is_set():
                    time.sleep(0.05)
                if not stop.is_set():
                    self.probe_agents()
                held.clear()  # everyone is back: the fleet may roll out again
                continue
            self.forge()
            stop.wait(self.rng.uniform(0.3, 1.0))
        self.stop.set()
        for t in thieves:
            t.join(timeout=30)
        self.settle(30.0)
        time.sleep(1.0)  # a report on its way
        refusals = self.refusals()
        with self.lock:
            summary = {
                "counts": dict(self.counts),
                "foreign_epochs": sorted(self.foreign_epochs),
                "foreign_shas": sorted(self.foreign_shas),
                "forged": dict(self.forged),
                "forged_unacked": self.forged_unacked,
                "probes_lost": self.probes_lost,
                "captured": len(self.captures),
                "refused": sum(refusals.values()),
                "refused_by_kind": dict(sorted(refusals.items())),
                "reports": [[d, r, n] for (d, r), n in sorted(self.reports.items())],
                "outcomes": dict(self.outcomes),
                "trap_requests": self.trap.requests,
                "agents": len(self.agents_at),
                "agent_restarts": self.agent_restarts,
            }
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.stop()
        with contextlib.suppress(Exception):
            self.spy.disconnect()
            self.spy.loop_stop()
        self.trap.close()
        return summary


def run_adversary(cfg: dict[str, Any], go: Any, stop: Any, hold: Any, held: Any, out: Any) -> None:
    """The adversary's process: start the agents and the spy, run until ``stop``, report."""
    logging.basicConfig(level=logging.CRITICAL)
    try:
        adversary = Adversary(cfg)
        adversary.start()
        out.put(("ready", cfg["index"], None))
        go.wait()
        out.put(("done", cfg["index"], adversary.run(stop, hold, held)))
    except BaseException:
        out.put(("error", cfg["index"], traceback.format_exc()))


class DropLog(logging.Handler):
    """When (wall clock) a fleet connection logged that it lost the broker."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if FLEET_DROPPED in record.getMessage():
            self.times.append(record.created)

    def attach(self) -> DropLog:
        for name in ("edgetally.fleet.ingest.mqtt", "edgetally.fleet.rollout.mqtt"):
            logger = logging.getLogger(name)
            logger.addHandler(self)
            logger.setLevel(logging.WARNING)
            logger.propagate = False  # counted, not printed
        return self


class ClosedControl:
    """The fleet's side of ``--closed`` (this process): rolls a new signed bundle out to one
    update agent at a time, holds the adversary while the broker restarts (and notes when),
    and counts the disconnects that were no restart's."""

    def __init__(
        self,
        fleet: Any,
        key: Path,
        root: Path,
        agents: list[str],
        seconds: float,
        rng: random.Random,
        hold: Any,
        held: Any,
        drops: DropLog,
    ) -> None:
        from edgetally.models.bundle import load_private_key

        self.fleet, self.root, self.agents, self.rng = fleet, root, agents, rng
        self.key = load_private_key(key)
        self.hold, self.held, self.drops = hold, held, drops
        self.interval = min(15.0, max(2.0, seconds / 20))
        self.next_at = time.monotonic() + 2.0
        self.last_restart = 0.0
        self.version = 0
        self.rollouts: list[tuple[str, str]] = []  # (rollout id, site/device)
        self.unsent: list[tuple[str, str]] = []  # rollouts whose command the fleet could not send
        self.pending: tuple[str, str] | None = None
        self.windows: list[list[float]] = []  # broker restarts: [stopped, started] (wall)
        self.hold_timeouts = 0

    def tick(self, now: float, next_restart: float | None) -> None:
        """A new rollout when it is time, none is pending, no restart is near and, after one,
        the fleet and every agent are back (the adversary clears ``held`` then)."""
        if self.pending is not None and not self._done(self.pending):
            return
        self.pending = None
        if now < self.next_at or now - self.last_restart < 10.0 or self.held.is_set():
            return
        if next_restart is not None and next_restart - now < 10.0:
            return
        if not self.fleet.counters().connected:
            return
        self.next_at = now + self.interval
        self._launch()

    def _launch(self) -> None:
        from edgetally.fleet.errors import FleetError
        from edgetally.fleet.rollout.plan import RolloutError
        from edgetally.models.bundle import BundleTarget, create_bundle

        device = self.rng.choice(self.agents)
        self.version += 1
        folder = self.root / "bundles"
        folder.mkdir(exist_ok=True)
        model = folder / f"model-{self.version}.onnx"
        model.write_bytes(self.rng.randbytes(256))
        bundle = folder / f"soak-{self.version}.bundle"
        create_bundle(
            [model],
            private_key=self.key,
            out=bundle,
            name="soak",
            version=str(self.version),
            targets=[BundleTarget.parse(AGENT_TARGET)],
        )
        ref = self.fleet.rollouts.add_bundle(bundle)
        known = {r.id for r in self.fleet.rollouts.all()}
        try:
            rollout = self.fleet.rollouts.create(ref.sha256, device, "100%")
        except RolloutError:  # the fleet has not heard of the device yet: later
            self.next_at = time.monotonic() + 1.0
            return
        except FleetError:  # made, but its command could not be handed to the broker
            self.unsent += [(r.id, device) for r in self.fleet.rollouts.all() if r.id not in known]
            return
        self.rollouts.append((rollout.id, device))
        self.pending = (rollout.id, device)

    def _state(self, rollout_id: str, device: str) -> str:
        return str(self.fleet.rollouts.get(rollout_id).devices[device].state)

    def _done(self, pending: tuple[str, str]) -> bool:
        return self._state(*pending) not in ("waiting", "notified")

    def settle(self, timeout: float = 30.0) -> None:
        """Until the pending rollout's device reported (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.pending is not None and not self._done(self.pending):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        self.pending = None

    def before_restart(self) -> None:
        self.settle()
        self.held.clear()
        self.hold.set()
        if not self.held.wait(60):
            self.hold_timeouts += 1
        self.windows.append([time.time(), math.inf])

    def after_restart(self) -> None:
        self.windows[-1][1] = time.time()
        self.hold.clear()
        self.last_restart = time.monotonic()

    def outside_restarts(self, times: list[float]) -> int:
        """How many of ``times`` were no broker restart's."""
        return sum(
            1
            for t in times
            if not any(a - RESTART_PAD_S <= t <= b + RESTART_PAD_S for a, b in self.windows)
        )

    def genuine(self) -> tuple[int, int]:
        """(rollouts made, rollouts whose device installed the bundle and said so)."""
        healthy = sum(1 for r, d in self.rollouts if self._state(r, d) == "healthy")
        return len(self.rollouts), healthy


def closed_report(
    control: ClosedControl,
    adversary: dict[str, Any],
    summaries: list[dict[str, Any]],
    broker: Mosquitto,
    store: Any,
) -> dict[str, Any]:
    """What the adversary did and what became of it."""
    c: Counter[str] = Counter(adversary["counts"])
    expected = {(device, rollout) for rollout, device in control.rollouts + control.unsent}
    wrongly = 0  # update reports beyond the one each rollout's command earns
    for device, rollout, n in adversary["reports"]:
        wrongly += n - 1 if (device, rollout) in expected else n
    stored_epochs = {
        str(row[0])
        for row in store.fetch(
            f"SELECT DISTINCT epoch FROM aggregates WHERE seq >= {HOSTILE_SEQ}"
        ).rows
    }
    dead = {str(row[0]) for row in store.fetch("SELECT payload_sha256 FROM dead_letters").rows}
    made, healthy = control.genuine()
    fleet_drops = control.outside_restarts(control.drops.times)
    forged: dict[str, int] = adversary["forged"]
    return {
        "client_id_thefts": c["thefts_of_fleet_ids"] + c["thefts_of_device_ids"],
        "thefts_of_fleet_ids": c["thefts_of_fleet_ids"],
        "thefts_of_device_ids": c["thefts_of_device_ids"],
        "theft_logins_failed": c["theft_logins_failed"],
        "fleet_disconnects": fleet_drops,
        "fleet_disconnects_at_restarts": len(control.drops.times) - fleet_drops,
        "device_disconnects": control.outside_restarts([t for s in summaries for t in s["drops"]]),
        "session_takeovers": broker.takeovers(),
        "foreign_publishes": c["foreign_publishes"],
        "foreign_refused": c["foreign_refused"],
        "foreign_accepted": c["foreign_accepted"],
        "foreign_unanswered": c["foreign_unanswered"],
        "foreign_stored": len(stored_epochs & set(adversary["foreign_epochs"])),
        "foreign_reached_fleet": len(dead & set(adversary["foreign_shas"])),
        "device_commands": c["device_command_publishes"],
        "device_commands_refused": c["device_command_refused"],
        "device_commands_accepted": c["device_command_accepted"],
        "genuine_commands": made,
        "genuine_obeyed": healthy,
        "genuine_unsent": len(control.unsent),
        "captured": adversary["captured"],
        "forged_commands": sum(forged.values()),
        "forged_by_kind": {k: forged.get(k, 0) for k in FORGED_KINDS},
        "forged_unacked": adversary["forged_unacked"],
        "probes_lost": adversary["probes_lost"],
        "commands_refused": adversary["refused"],
        "refused_by_kind": adversary["refused_by_kind"],
        "commands_obeyed_wrongly": wrongly,
        "attacker_downloads": adversary["trap_requests"],
        "update_reports": sum(n for _d, _r, n in adversary["reports"]),
        "agents": adversary["agents"],
        "agent_restarts": adversary["agent_restarts"],
        "hostile_logins": HOSTILE_LOGINS,
        "hold_timeouts": control.hold_timeouts,
    }


def closed_problems(r: dict[str, Any]) -> list[str]:
    """What in a closed report fails the soak."""
    problems = [
        f"{key} {r[key]}"
        for key in (
            "fleet_disconnects",
            "device_disconnects",
            "session_takeovers",
            "foreign_accepted",
            "foreign_stored",
            "foreign_reached_fleet",
            "device_commands_accepted",
            "commands_obeyed_wrongly",
            "attacker_downloads",
        )
        if r[key]
    ]
    if r["genuine_obeyed"] != r["genuine_commands"] or not r["genuine_commands"]:
        problems.append(f"genuine commands obeyed {r['genuine_obeyed']}/{r['genuine_commands']}")
    if r["commands_refused"] != r["forged_commands"] or not r["forged_commands"]:
        problems.append(f"forged commands refused {r['commands_refused']}/{r['forged_commands']}")
    if not r["client_id_thefts"] or not r["foreign_publishes"]:
        problems.append("no client id was stolen or no foreign aggregate sent")
    return problems


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--minutes", type=float, default=10.0, help="how long devices send")
    p.add_argument("--hostile-every", type=int, default=50, help="1 in N messages (0: none)")
    p.add_argument("--db", help="a new DuckDB file or an empty PostgreSQL database URL")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--outbox-devices",
        type=int,
        help="devices on the runtime's outbox and publisher (default: one in ten, at least 1)",
    )
    p.add_argument(
        "--workers", type=int, help="device processes (default: 1 per 50 devices, at most 4)"
    )
    p.add_argument("--broker-restarts", type=int, help="default: one per 2 minutes, at least 1")
    p.add_argument("--reimages", type=int, help="default: devices x minutes / 50, at least 2")
    p.add_argument(
        "--closed",
        action="store_true",
        help="the broker of fleet broker-config "
        "(TLS, logins, ACL), update agents, client-id thieves, forged commands",
    )
    args = p.parse_args(argv)
    if args.devices < 1 or args.minutes <= 0 or args.hostile_every < 0:
        p.error("--devices and --minutes must be positive, --hostile-every 0 or more")
    if args.outbox_devices is None:
        args.outbox_devices = max(1, args.devices // 10)
    args.outbox_devices = min(args.outbox_devices, args.devices)
    if args.workers is None:
        args.workers = min(4, max(1, -(-args.devices // 50)))
    args.workers = max(1, min(args.workers, args.devices))
    if args.broker_restarts is None:
        args.broker_restarts = max(1, round(args.minutes / 2))
    if args.reimages is None:
        args.reimages = max(2, round(args.devices * args.minutes / 50))
    return args


def device_specs(args: argparse.Namespace) -> list[tuple[int, str, str, bool]]:
    n, k = args.devices, args.outbox_devices
    with_outbox = {i * n // k for i in range(k)} if k else set()
    return [(i, f"site-{i // 10:03d}", f"dev-{i:04d}", i in with_outbox) for i in range(n)]


def agent_devices(specs: list[tuple[int, str, str, bool]]) -> list[tuple[str, str]]:
    """The devices that also run an update agent (--closed): 2 to 4, paho devices first."""
    n = min(len(specs), 4, max(2, len(specs) // 25))
    pool = [s for s in specs if not s[3]] or specs
    pool = pool if len(pool) >= n else specs
    return [(pool[k * len(pool) // n][1], pool[k * len(pool) // n][2]) for k in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    from edgetally.fleet.config import FleetConfig
    from edgetally.fleet.server import FleetServer

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="edgetally-soak-"))
    specs = device_specs(args)
    closed_dir: Path | None = None
    drops = DropLog().attach() if args.closed else None
    if args.closed:
        port = free_port()
        closed_dir = closed_broker(root, port, specs)
        broker = Mosquitto(root, closed_dir, port)
    else:
        broker = Mosquitto(root)
    broker.start()
    fleet: Any = None
    procs: list[Any] = []
    try:
        db = args.db or str(root / "fleet.duckdb")
        ctx = mp.get_context("spawn")
        closed: dict[str, Any] = {}
        if closed_dir is not None:
            closed = _closed_setup(root, closed_dir, broker.port)
            fleet_config = FleetConfig.of(
                f"mqtts://{closed['fleet_user']}@127.0.0.1:{broker.port}",
                db,
                "127.0.0.1:0",
                broker_password_file=closed["password_file"],
                ca_file=closed["ca"],
                tokens_file=closed["tokens"],
                rollouts_dir=str(root / "rollouts"),
                fleet_key=closed["key"],
                rollout_tick_s=1.0,
            )
        else:
            fleet_config = FleetConfig.of(broker.url, db, "127.0.0.1:0")
        fleet = FleetServer(fleet_config).start()
        before = sum(
            scalar(fleet.store, f"SELECT count(*) FROM {t}")
            for t in ("aggregates", "power", "audio", "shelf", "dead_letters")
        )
        if before:
            raise SystemExit(f"soak: the store already holds {before} rows: give an empty one")
        rss_start = rss_mb()
        watch = Watch(fleet, quiet=False)
        watch.start()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        t0 = now - timedelta(days=60)
        strangers = [(site, device) for _i, site, device, _o in specs]
        go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        seconds = args.minutes * 60
        control: ClosedControl | None = None
        if closed_dir is not None:
            assert drops is not None
            agents = agent_devices(specs)
            hold, held = ctx.Event(), ctx.Event()
            control = ClosedControl(
                fleet,
                Path(closed["key"]),
                root,
                [f"{s}/{d}" for s, d in agents],
                seconds,
                random.Random(args.seed * 31 + 7),
                hold,
                held,
                drops,
            )
            acfg = _adversary_config(args, root, closed, broker.port, t0, specs, agents)
            proc = ctx.Process(
                target=run_adversary, args=(acfg, go, stop, hold, held, out), daemon=True
            )
            proc.start()
            procs.append(proc)
        for w, reimages in enumerate(split(args.reimages, args.workers)):
            cfg = {
                "index": w,
                "seed": args.seed,
                "port": broker.port,
                "root": str(root),
                "t0": t0.isoformat(),
                "hostile_every": args.hostile_every,
                "devices": specs[w :: args.workers],
                "strangers": strangers,
                "seconds": seconds,
                "reimages": reimages,
                "closed": {"credentials": closed["credentials"], "ca": closed["ca"]}
                if closed
                else None,
            }
            proc = ctx.Process(target=run_worker, args=(cfg, go, stop, out), daemon=True)
            proc.start()
            procs.append(proc)
        processes = args.workers + (1 if control else 0)  # the adversary's is the last
        _collect(out, "ready", processes, 180)
        go.set()
        restarts, downtime = _run(broker, out, args.broker_restarts, seconds, rng, control)
        stop.set()
        drain_from = time.monotonic()
        summaries = _collect(out, "done", processes, DRAIN_S + 120)
        adversary = summaries.pop() if control else None
        _mark(broker, fleet, closed.get("marker"))
        drain_s = time.monotonic() - drain_from
        watch.sample()
        watch.stop.set()
        counters = fleet.counters()
        rss_end = rss_mb()
        ledger: dict[Key, tuple[str, tuple[Any, ...]]] = {}
        waiting: set[Key] = set()
        for s in summaries:
            data = pickle.loads(Path(s["ledger"]).read_bytes())
            ledger.update(data["ledger"])
            waiting.update(data["waiting"])
        hostile_sha: dict[str, set[str]] = defaultdict(set)
        for s in summaries:
            for kind, shas in s["hostile_sha"].items():
                hostile_sha[kind].update(shas)
        result = check(fleet.store, ledger, waiting, hostile_sha)
        closed_result = None
        if control is not None and adversary is not None:
            closed_result = closed_report(control, adversary, summaries, broker, fleet.store)
        report = _report(
            args,
            summaries,
            result,
            counters,
            watch,
            memory=(rss_start, rss_end, watch.peak),
            broker=(restarts, downtime),
            wall=(seconds, drain_s),
            store=fleet.store.description,
            closed=closed_result,
        )
        fleet.stop()
        fleet = None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        if fleet is not None:
            fleet.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0 if report["ok"] else 1


def _closed_setup(root: Path, broker_dir: Path, port: int) -> dict[str, Any]:
    """The fleet's files for --closed: its password, the bundle signing key, a device
    token for the agents; and the logins the soak's own clients use."""
    from edgetally.fleet.http.auth import add_token
    from edgetally.models.bundle import generate_keypair

    creds_path = broker_dir / "credentials.json"
    creds = json.loads(creds_path.read_text())
    password_file = root / "fleet.pw"
    password_file.write_text(creds["fleet"]["password"] + "\n")
    password_file.chmod(0o600)
    key, pub = generate_keypair(root / "keys")
    tokens = root / "tokens.json"
    token = add_token(tokens, "soak-agents", "device")
    accounts: list[str] = creds["fleet"]["accounts"]
    ca = str(broker_dir / "ca.crt")
    return {
        "credentials": str(creds_path),
        "ca": ca,
        "fleet_user": creds["fleet"]["username"],
        "accounts": accounts,
        "password_file": str(password_file),
        "key": str(key),
        "pubkey": str(pub),
        "tokens": str(tokens),
        "token": token,
        # Fleet accounts the fleet itself does not use here (worker slots): the marker's
        # and the spy's (a leaked fleet password).
        "marker": (accounts[-2], creds["fleet"]["password"], ca),
        "spy": accounts[-1],
    }


def _adversary_config(
    args: argparse.Namespace,
    root: Path,
    closed: dict[str, Any],
    port: int,
    t0: datetime,
    specs: list[tuple[int, str, str, bool]],
    agents: list[tuple[str, str]],
) -> dict[str, Any]:
    rng = random.Random(args.seed * 17 + 3)
    others = [(s, d) for _i, s, d, _o in specs if (s, d) not in agents]
    victims = agents + rng.sample(others, min(4, len(others)))
    fleet_user = closed["fleet_user"]
    fleet_ids = [  # what the fleet's connections ask for, and the ids they are given
        f"edgetally-{fleet_user}",
        f"edgetally-{fleet_user}-rollouts",
        f"edgetally-{fleet_user}-status",
        f"edgetally-{fleet_user}-0",
        *closed["accounts"],
    ]
    device_ids = [
        cid
        for s, d in victims
        for cid in (f"{s}/{d}", f"{s}/{d}/updater", f"soak-{s}-{d}", f"edgetally-{s}-{d}")
    ]
    return {
        "index": args.workers,
        "seed": args.seed,
        "port": port,
        "root": str(root),
        "t0": t0.isoformat(),
        "credentials": closed["credentials"],
        "ca": closed["ca"],
        "pubkey": closed["pubkey"],
        "token": closed["token"],
        "spy": closed["spy"],
        "agents": agents,
        "victims": victims,
        "hostile": hostile_logins(),
        "fleet_ids": fleet_ids,
        "device_ids": device_ids,
    }


def _collect(out: Any, what: str, n: int, timeout: float) -> list[dict[str, Any]]:
    """Wait for ``n`` messages ``what`` from the workers (a worker's error ends the run)."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < n:
        try:
            kind, index, payload = out.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            raise SystemExit(
                f"soak: workers did not report {what} within {timeout:.0f} s"
            ) from None
        if kind == "error":
            raise SystemExit(f"soak: worker {index} failed:\n{payload}")
        got[index] = payload
    return [got[i] for i in sorted(got)]


def _run(
    broker: Mosquitto,
    out: Any,
    n: int,
    seconds: float,
    rng: random.Random,
    control: ClosedControl | None = None,
) -> tuple[int, float]:
    """Let the devices run for ``seconds``, stopping and starting the broker ``n`` times
    at random moments; a worker's error ends the run. Returns (restarts, seconds down).
    ``control`` (--closed): rollouts on the way, the adversary held during restarts."""
    started = time.monotonic()
    slot = seconds / (n + 1)
    moments = sorted(started + slot * (k + 1 + rng.uniform(-0.3, 0.3)) for k in range(n))
    done, down = 0, 0.0
    while (now := time.monotonic()) < started + seconds:
        with contextlib.suppress(queue.Empty):
            kind, index, payload = out.get_nowait()
            if kind == "error":
                raise SystemExit(f"soak: worker {index} failed:\n{payload}")
        if moments and now >= moments[0]:
            moments.pop(0)
            if now < started + seconds - 5:
                if control is not None:
                    control.before_restart()
                stopped = time.monotonic()
                broker.stop()
                time.sleep(rng.uniform(1.0, 4.0))
                broker.start()
                if control is not None:
                    control.after_restart()
                down += time.monotonic() - stopped
                done += 1
            continue
        if control is not None and now < started + seconds - 5:
            control.tick(now, moments[0] if moments else None)
        time.sleep(0.2)
    if control is not None:
        control.settle()
    if done and not (broker.data / "mosquitto.db").exists():
        print("soak: warning: Mosquitto saved no persistence file", file=sys.stderr)
    return done, down


def _mark(broker: Mosquitto, fleet: Any, login: Login | None = None) -> None:
    """Publish a marker after everything else; once ingest ignored it, it processed all.
    ``login`` (--closed): a fleet account. There commands and update reports are ignored
    too, so ingest must also have received nothing new for a while."""
    import paho.mqtt.client as mqtt

    before = fleet.counters().ignored
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="soak-mark")
    if login is not None:
        c.username_pw_set(login[0], login[1])
        c.tls_set(ca_certs=login[2])
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.publish(MARKER_TOPIC, b"{}", qos=1).wait_for_publish(timeout=60)
    finally:
        c.loop_stop()
        c.disconnect()
    if not fleet.ingestor.wait_until(lambda k: k.ignored > before, timeout=DRAIN_S):
        print("soak: warning: ingest did not reach the marker", file=sys.stderr)
    fleet.ingestor.wait_until(lambda k: k.processed >= k.received and not k.queue_depth, 30)
    if login is not None:
        seen, since = fleet.counters().received, time.monotonic()
        deadline = since + 60
        while time.monotonic() - since < 2.0 and time.monotonic() < deadline:
            time.sleep(0.1)
            if fleet.counters().received != seen:
                seen, since = fleet.counters().received, time.monotonic()
        fleet.ingestor.wait_until(lambda k: k.processed >= k.received and not k.queue_depth, 30)


def _report(
    args: argparse.Namespace,
    summaries: list[dict[str, Any]],
    result: dict[str, Any],
    k: Any,
    watch: Watch,
    *,
    memory: tuple[float, float, float],
    broker: tuple[int, float],
    wall: tuple[float, float],
    store: str,
    closed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    valid: Counter[str] = Counter()
    hostile: Counter[str] = Counter()
    reimages: Counter[str] = Counter()
    for s in summaries:
        valid.update(s["valid"])
        hostile.update(s["hostile"])
        reimages.update(s["reimages"])
    conflicts_sent = hostile.get("conflict", 0)
    dead = result["dead_letters"]
    waiting = sum(s["waiting"] for s in summaries) + sum(s["hostile_waiting"] for s in summaries)
    report = {
        "command": "python benchmarks/soak.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in (
                ("devices", args.devices),
                ("minutes", f"{args.minutes:g}"),
                ("hostile_every", args.hostile_every),
                ("seed", args.seed),
                ("outbox_devices", args.outbox_devices),
                ("workers", args.workers),
                ("broker_restarts", args.broker_restarts),
                ("reimages", args.reimages),
            )
        )
        + (" --closed" if args.closed else ""),
        "devices": args.devices,
        "outbox_devices": args.outbox_devices,
        "minutes": args.minutes,
        "store": "postgresql" if store.startswith("postgresql") else "duckdb",
        "sent": {
            "valid": sum(valid.values()),
            "valid_by_kind": dict(sorted(valid.items())),
            "hostile": sum(hostile.values()),
            "hostile_by_kind": {kind: hostile.get(kind, 0) for kind in HOSTILE_KINDS},
            "rate_per_s": round((sum(valid.values()) + sum(hostile.values())) / wall[0], 1),
        },
        "stored": result["stored"],
        "dead_letters": dead,
        "lost": result["lost"],
        "lost_missing": result["lost_missing"],
        "lost_other_counts": result["lost_other_counts"],
        "duplicated": result["duplicated"],
        "duplicated_keys": result["duplicated_keys"],
        "stored_not_sent": result["stored_not_sent"],
        "totals": result["totals"],
        "still_waiting": waiting,
        "hostile_unaccounted": result["hostile_unaccounted"],
        "conflicts": {
            "sent": conflicts_sent,
            "sent_distinct": result["hostile_distinct"].get("conflict", 0),
            "recorded": k.conflicts,
            "dead_letters": dead["by_reason"].get("conflict", 0),
            "distinct": dead["distinct_payloads_by_reason"].get("conflict", 0),
            "devices_counter": result["devices_conflicts"],
        },
        "ingest": {
            "loop_errors": k.loop_errors,
            "loop_restarts": watch.restarts,
            "loop_down_samples": watch.down_samples,
            "running": k.running,
            "lost": k.lost,
            "store_errors": k.store_errors,
            "received": k.received,
            "processed": k.processed,
            "new": k.aggregates_new + k.power_new + k.audio_new + k.shelf_new,
            "duplicates": (
                k.aggregates_duplicate + k.power_duplicate + k.audio_duplicate + k.shelf_duplicate
            ),
            "statuses": k.statuses,
        },
        "memory_mb": {
            "start": round(memory[0], 1),
            "end": round(memory[1], 1),
            "peak": round(memory[2], 1),
        },
        "broker_restarts": broker[0],
        "broker_down_s": round(broker[1], 1),
        "reimages": sum(reimages.values()),
        "reimages_by_device": dict(sorted(reimages.items())),
        "reimages_not_done": sum(s["reimages_not_done"] for s in summaries),
        "device_reconnects": sum(s["reconnects"] for s in summaries),
        "run_s": round(wall[0], 1),
        "drain_s": round(wall[1], 1),
        "examples": result["examples"],
    }
    if closed is not None:
        report["closed"] = closed
    report["ok"] = not (
        (closed is not None and closed_problems(closed))
        or report["lost"]
        or report["duplicated"]
        or waiting
        or result["hostile_unaccounted"]
        or k.loop_errors
        or watch.restarts
        or watch.down_samples
        or k.lost
        or not k.running
    )
    return report


def _print(r: dict[str, Any]) -> None:
    s, st, d, c, i, m = (
        r["sent"],
        r["stored"],
        r["dead_letters"],
        r["conflicts"],
        r["ingest"],
        r["memory_mb"],
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in s["valid_by_kind"].items())
    bad = ", ".join(f"{k} {v:,}" for k, v in s["hostile_by_kind"].items())
    reasons = ", ".join(
        f"{k} {v:,} ({d['distinct_payloads_by_reason'].get(k, 0):,} distinct)"
        for k, v in d["by_reason"].items()
    )
    t = r["totals"]
    lines = [
        f"soak: {r['command']}",
        f"  {r['devices']} devices ({r['outbox_devices']} on the runtime's outbox and "
        f"publisher), {r['minutes']:g} min, {r['store']}",
        f"  sent: valid {s['valid']:,} ({kinds}); hostile {s['hostile']:,} ({bad}); "
        f"{s['rate_per_s']:,} messages/s",
        f"  stored: {st['messages']:,} messages under {st['keys']:,} keys "
        f"(messages per key: {st['messages_per_key']}); rows {st['rows']}",
        f"  dead letters: {d['rows']:,} rows: {reasons}",
        f"  lost: {r['lost']} (missing {r['lost_missing']}, other counts "
        f"{r['lost_other_counts']}); duplicated: {r['duplicated']} (keys stored twice "
        f"{r['duplicated_keys']}, stored but never sent {r['stored_not_sent']}); still "
        f"waiting {r['still_waiting']}; hostile unaccounted {r['hostile_unaccounted'] or 0}",
        f"  in/out: ledger {t['ledger_in']:,}/{t['ledger_out']:,}, stored "
        f"{t['stored_in']:,}/{t['stored_out']:,}",
        f"  conflicts: sent {c['sent']:,} ({c['sent_distinct']:,} distinct), recorded "
        f"{c['recorded']:,} (dead letters {c['dead_letters']:,}, {c['distinct']:,} distinct; "
        f"devices.conflicts {c['devices_counter']:,})",
        f"  ingest: loop errors {i['loop_errors']}, loop restarts {i['loop_restarts']}, "
        f"running {'yes' if i['running'] else 'NO'}, lost {i['lost']}, store errors "
        f"{i['store_errors']}; received {i['received']:,}, processed {i['processed']:,}, "
        f"new {i['new']:,}, duplicates {i['duplicates']:,}, statuses {i['statuses']:,}",
        f"  fleet memory (RSS): start {m['start']:.0f} MB, end {m['end']:.0f} MB, "
        f"peak {m['peak']:.0f} MB",
        f"  broker restarts {r['broker_restarts']} ({r['broker_down_s']} s down), "
        f"re-images {r['reimages']} {r['reimages_by_device']} ({r['reimages_not_done']} not "
        f"done), device reconnects {r['device_reconnects']:,}; drain {r['drain_s']} s",
        *(_closed_lines(r["closed"]) if "closed" in r else []),
        *(f"  ! {e}" for e in r["examples"]),
        f"  result: {'OK' if r['ok'] else 'FAILED'}",
    ]
    print("\n".join(lines))


def _closed_lines(c: dict[str, Any]) -> list[str]:
    forged = ", ".join(f"{k} {v:,}" for k, v in c["forged_by_kind"].items())
    refused = ", ".join(f"{k} {v:,}" for k, v in c["refused_by_kind"].items())
    return [
        f"  closed broker: {c['client_id_thefts']:,} client ids stolen "
        f"({c['thefts_of_fleet_ids']:,} the fleet's, {c['thefts_of_device_ids']:,} devices'; "
        f"{c['hostile_logins']} hostile logins); fleet disconnects "
        f"{c['fleet_disconnects']} (at broker restarts {c['fleet_disconnects_at_restarts']}), "
        f"device disconnects {c['device_disconnects']}, ids taken over "
        f"{c['session_takeovers']}",
        f"  foreign aggregates: {c['foreign_publishes']:,} sent, {c['foreign_refused']:,} "
        f"refused (not authorised), {c['foreign_accepted']} taken, {c['foreign_unanswered']} "
        f"unanswered; stored {c['foreign_stored']}, reached the fleet "
        f"{c['foreign_reached_fleet']}; commands from device logins {c['device_commands']:,} "
        f"({c['device_commands_refused']:,} refused, {c['device_commands_accepted']} taken)",
        f"  commands: genuine {c['genuine_commands']} (obeyed {c['genuine_obeyed']}, "
        f"{c['agents']} agents, restarted {c['agent_restarts']}); forged "
        f"{c['forged_commands']:,} ({forged}; from {c['captured']} captured), refused "
        f"{c['commands_refused']:,} ({refused}); obeyed wrongly "
        f"{c['commands_obeyed_wrongly']}, attacker downloads {c['attacker_downloads']}; "
        f"probes that found an agent away after a restart {c['probes_lost']}",
    ]


if __name__ == "__main__":
    sys.exit(main())
