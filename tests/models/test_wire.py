"""The wire schema: round trips, strictness, bounds, and topic/payload agreement."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from edgetally.models.errors import WireError
from edgetally.models.topics import (
    TOPIC_PREFIX,
    DeviceId,
    SiteId,
    Topic,
    TopicKind,
    parse_topic,
    subscription,
    topic_for,
)
from edgetally.models.wire import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Aggregate,
    Command,
    CommandId,
    DeviceStatus,
    DwellStats,
    Message,
    PowerReading,
    Seq,
    from_json,
    parse,
    to_json,
)
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
AGG_TOPIC = "edgetally/v1/shop-1/dev-1/agg"


def agg(**kw: object) -> Aggregate:
    base: dict[str, object] = dict(
        site="shop-1",
        device="dev-1",
        source="cam0",
        line="door",
        seq=7,
        start=T0,
        seconds=60,
        in_count=4,
        out_count=2,
        occupancy_mean=1.5,
        occupancy_peak=3,
        dwell=DwellStats(count=2, median_s=12.0, p90_s=30.0),
        shelf_events={"gap_opened": 1},
        audio_events={"glass": 2},
    )
    base.update(kw)
    return Aggregate.model_validate(base)


def agg_dict(**kw: object) -> dict[str, object]:
    d: dict[str, object] = json.loads(to_json(agg()))
    d.update(kw)
    return d


def test_topic_version_matches_schema_version() -> None:
    assert f"edgetally/v{SCHEMA_VERSION}" == TOPIC_PREFIX


def test_topics_build_and_parse_back() -> None:
    kinds: tuple[TopicKind, ...] = ("agg", "status", "power", "cmd")
    for kind in kinds:
        t = topic_for("shop-1", "dev-1", kind)
        assert t == f"edgetally/v1/shop-1/dev-1/{kind}"
        assert parse_topic(t) == Topic(SiteId("shop-1"), DeviceId("dev-1"), kind)
        assert str(parse_topic(t)) == t
    assert subscription() == "edgetally/v1/+/+/+"
    assert subscription("agg") == "edgetally/v1/+/+/agg"
    assert subscription("status", site="shop-1") == "edgetally/v1/shop-1/+/status"


@pytest.mark.parametrize(
    "topic",
    [
        "edgetally/v2/s/d/agg",
        "edgetally/v1/s/d/agg/extra",
        "edgetally/v1/s/d",
        "edgetally/v1/s/d/video",
        "edgetally/v1/+/d/agg",
        "edgetally/v1/s/#/agg",
        "edgetally/v1//d/agg",
        "other/v1/s/d/agg",
        "edgetally/v1/" + "s" * 65 + "/d/agg",
        "x" * 10_000,
    ],
)
def test_bad_topics_are_wire_errors(topic: str) -> None:
    with pytest.raises(WireError):
        parse_topic(topic)


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", " x", "x" * 65, "é"])
def test_topic_for_rejects_unsafe_ids(bad: str) -> None:
    with pytest.raises(WireError, match="site"):
        topic_for(bad, "d", "agg")


def test_aggregate_round_trip() -> None:
    a = agg()
    back = parse(AGG_TOPIC, to_json(a))
    assert back == a
    assert isinstance(back, Aggregate)
    assert back.v == SCHEMA_VERSION and back.kind == "agg"


def test_all_messages_round_trip() -> None:
    msgs: list[Message] = [
        DeviceStatus(
            site=SiteId("shop-1"),
            device=DeviceId("dev-1"),
            at=T0,
            state="online",
            model="yolox_nano@int8",
            backend="openvino/CPU",
            fps=9.5,
            uptime_s=3600.0,
            errors=1,
            last_error="camera reopened",
        ),
        PowerReading(
            site=SiteId("shop-1"),
            device=DeviceId("dev-1"),
            seq=Seq(9),
            source="rapl",
            start=T0,
            seconds=60,
            wh=0.2,
            mean_w=12.0,
            measured=True,
        ),
        Command(
            site=SiteId("shop-1"),
            device=DeviceId("dev-1"),
            command_id=CommandId("0" * 32),
            at=T0,
            action="update",
            rollout=CommandId("ro-1"),
            bundle_sha256="a" * 64,
            version="2",
            url="https://x/bundles/" + "a" * 64,
            size=1234,
            key_id="b" * 16,
            sig="c" * 128,
        ),
    ]
    for m in msgs:
        back = parse(topic_for("shop-1", "dev-1", m.kind), to_json(m))
        assert back == m
        assert type(back) is type(m)
        assert from_json(type(m), to_json(m)) == m


def test_times_are_normalised_to_utc_and_naive_times_rejected() -> None:
    plus2 = timezone(timedelta(hours=2))
    a = agg(start=datetime(2024, 3, 1, 11, 0, tzinfo=plus2))
    assert a.start == T0 and a.start.utcoffset() == timedelta(0)
    with pytest.raises(WireError, match=r"start.*timezone"):
        parse(AGG_TOPIC, json.dumps(agg_dict(start="2024-03-01T09:00:00")).encode())
    with pytest.raises(ValueError):
        agg(start=datetime(2024, 3, 1, 9, 0))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"in_count": "4"}, "in_count"),
        ({"in_count": 4.0}, "in_count"),
        ({"in_count": -1}, "in_count"),
        ({"seq": True}, "seq"),
        ({"seconds": 0}, "seconds"),
        ({"v": 2}, "schema version"),
        ({"kind": "status"}, "kind"),
        ({"frame": "AAAA"}, "frame: Extra inputs"),
        ({"line": "x" * 65}, "line"),
        ({"line": "a/b"}, "line"),
        ({"occupancy_mean": 5.0, "occupancy_peak": 3}, "occupancy_mean"),
        ({"shelf_events": {f"e{i}": 1 for i in range(33)}}, "shelf_events"),
        ({"shelf_events": {"gap": "1"}}, "shelf_events"),
        ({"audio_events": {"x" * 100: 1}}, "audio_events"),
        ({"dwell": {"count": 1, "median_s": 9.0, "p90_s": 1.0}}, "dwell"),
        ({"dwell": {"count": 1, "median_s": 1.0, "p90_s": 2.0, "clip": "x"}}, "clip"),
        ({"start": None}, "start"),
    ],
)
def test_invalid_aggregates_name_the_field(change: dict[str, object], needle: str) -> None:
    payload = json.dumps(agg_dict(**change)).encode()
    with pytest.raises(WireError) as info:
        parse(AGG_TOPIC, payload)
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg and len(msg) < 400


def test_nan_and_infinity_are_rejected() -> None:
    for literal in (b"NaN", b"Infinity", b"1e999"):
        payload = to_json(agg()).replace(b'"occupancy_mean":1.5', b'"occupancy_mean":' + literal)
        with pytest.raises(WireError):
            parse(AGG_TOPIC, payload)


def test_payload_must_match_topic_site_and_device() -> None:
    with pytest.raises(WireError, match=r"shop-1/dev-1.*shop-1/dev-2"):
        parse("edgetally/v1/shop-1/dev-2/agg", to_json(agg()))
    with pytest.raises(WireError, match=r"shop-1/dev-1.*shop-9/dev-1"):
        parse("edgetally/v1/shop-9/dev-1/agg", to_json(agg()))
    # an aggregate on the status topic is not a status
    with pytest.raises(WireError, match="DeviceStatus"):
        parse("edgetally/v1/shop-1/dev-1/status", to_json(agg()))


def test_huge_payloads_are_refused_without_echo() -> None:
    huge = b'{"site":"' + b"a" * (MAX_PAYLOAD_BYTES + 1) + b'"}'
    with pytest.raises(WireError, match="too large") as info:
        parse(AGG_TOPIC, huge)
    assert "aaaa" not in str(info.value)
    long_key = json.dumps(agg_dict(**{"k" * 5000: 1})).encode()
    with pytest.raises(WireError) as info:
        parse(AGG_TOPIC, long_key)
    assert len(str(info.value)) < 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(WireError):
        parse(AGG_TOPIC, data)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(agg_dict()), "zz"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**70), 2**70),
            st.floats(),
            st.text(max_size=80),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        ),
        max_size=6,
    )
)
def test_mutated_aggregates_either_parse_or_raise_wire_error(change: dict[str, object]) -> None:
    try:
        payload = json.dumps(agg_dict(**change)).encode()
    except ValueError:
        return
    try:
        msg = parse(AGG_TOPIC, payload)
    except WireError:
        return
    assert isinstance(msg, Aggregate)
    assert msg.start.tzinfo is not None


def test_no_field_can_hold_bytes_or_long_text() -> None:
    """A guard: every string field of every message is bounded by a pattern or length."""
    for cls in (Aggregate, DeviceStatus, PowerReading, Command, DwellStats):
        schema = cls.model_json_schema()
        text = json.dumps(schema)
        assert '"format": "binary"' not in text
        assert '"format": "base64"' not in text


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59-23:59"],
)
def test_times_that_overflow_utc_are_wire_errors(when: str) -> None:
    from edgetally.models.wire import parse

    fields = {"site": "s", "device": "d", "source": "c", "line": "l", "seq": 1, "seconds": 60}
    body = json.dumps({**fields, "start": when}).encode()
    with pytest.raises(WireError, match="time is out of range"):
        parse("edgetally/v1/s/d/agg", body)
    status = json.dumps({"site": "s", "device": "d", "at": when, "state": "online"})
    with pytest.raises(WireError, match="time is out of range"):
        parse("edgetally/v1/s/d/status", status.encode())


def test_the_time_window_is_configurable() -> None:
    from datetime import UTC, datetime

    from edgetally.models.wire import TimeWindow, parse

    now = datetime(2026, 1, 1, tzinfo=UTC)
    body = b'{"site":"s","device":"d","at":"2026-01-03T00:00:00Z","state":"online"}'
    with pytest.raises(WireError, match="ahead of the receiving clock"):
        parse("edgetally/v1/s/d/status", body, now=now)

    def status_at(payload: bytes, window: TimeWindow | None) -> datetime:
        status = parse("edgetally/v1/s/d/status", payload, window=window, now=now)
        assert isinstance(status, DeviceStatus)
        return status.at

    wide = TimeWindow(max_ahead_s=3 * 86_400)
    assert status_at(body, wide).day == 3
    assert status_at(body, None).day == 3
    old = b'{"site":"s","device":"d","at":"1990-01-01T00:00:00Z","state":"online"}'
    with pytest.raises(WireError, match="before 2000-01-01"):
        parse("edgetally/v1/s/d/status", old, now=now)
    early = TimeWindow(earliest=datetime(1980, 1, 1, tzinfo=UTC))
    assert status_at(old, early).year == 1990
