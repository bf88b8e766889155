"""MQTT topic names of the wire: ``edgetally/v1/{site}/{device}/{kind}``.

The one place that builds and parses them. Site and device ids are short, topic-safe
strings (no ``/``, ``+``, ``#`` or spaces), so a topic always splits back into the same parts.
The ``v1`` is the major version of the wire schema (``edgetally.models.wire.SCHEMA_VERSION``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, NewType, cast, get_args

from edgetally.models.errors import WireError

SiteId = NewType("SiteId", str)
DeviceId = NewType("DeviceId", str)

TopicKind = Literal["agg", "status", "power", "audio", "shelf", "cmd", "update"]
TOPIC_KINDS: Final[tuple[str, ...]] = get_args(TopicKind)
# What the fleet's ingest stores; ``cmd`` goes fleet -> device and ``update`` (a device's
# report on a rollout step) goes to the rollouts.
INGESTED_KINDS: Final[tuple[str, ...]] = ("agg", "status", "power", "audio", "shelf")

TOPIC_ROOT: Final = "edgetally"
TOPIC_VERSION: Final = "v1"
TOPIC_PREFIX: Final = f"{TOPIC_ROOT}/{TOPIC_VERSION}"

ID_MAX_LEN: Final = 64
# Letters, digits and ``_ . : -``; starts with a letter or digit. Safe in topics and URLs.
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_ID_RE: Final = re.compile(ID_PATTERN)
_MAX_TOPIC_LEN: Final = 256


def check_id(value: str, what: str) -> str:
    """``value`` if it is a valid site/device/line id, else :class:`WireError` naming it."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise WireError(
            f"invalid {what} id {shown}: use 1-{ID_MAX_LEN} letters, digits, '_', '.', ':' or '-'"
        )
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: which site and device it belongs to and what it carries."""

    site: SiteId
    device: DeviceId
    kind: TopicKind

    def __str__(self) -> str:
        return f"{TOPIC_PREFIX}/{self.site}/{self.device}/{self.kind}"


def topic_for(site: str, device: str, kind: TopicKind) -> str:
    """The topic a device publishes ``kind`` on (or, for ``cmd``, listens on)."""
    check_id(site, "site")
    check_id(device, "device")
    if kind not in TOPIC_KINDS:
        raise WireError(f"unknown topic kind {kind!r}: expected one of {', '.join(TOPIC_KINDS)}")
    return f"{TOPIC_PREFIX}/{site}/{device}/{kind}"


def parse_topic(topic: str) -> Topic:
    """Split a topic into site, device and kind, or raise :class:`WireError` with the reason."""
    if len(topic) > _MAX_TOPIC_LEN:
        raise WireError(f"topic too long ({len(topic)} characters)")
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_PREFIX:
        raise WireError(
            f"not an edgetally topic: {topic[:80]!r} (expected {TOPIC_PREFIX}/SITE/DEVICE/KIND)"
        )
    site, device, kind = parts[2], parts[3], parts[4]
    check_id(site, "site")
    check_id(device, "device")
    if kind not in TOPIC_KINDS:
        kinds = ", ".join(TOPIC_KINDS)
        raise WireError(f"unknown topic kind {kind[:32]!r}: expected one of {kinds}")
    return Topic(SiteId(site), DeviceId(device), cast(TopicKind, kind))


def subscription(kind: TopicKind | None = None, site: str | None = None) -> str:
    """A wildcard filter: every device's ``kind`` (all kinds when None), one site or all."""
    site_part = "+" if site is None else check_id(site, "site")
    return f"{TOPIC_PREFIX}/{site_part}/+/{'+' if kind is None else kind}"
