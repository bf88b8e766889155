"""The audio and shelf messages: round trips, topics, and what they refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from edgetally.models.errors import WireError
from edgetally.models.topics import parse_topic, topic_for
from edgetally.models.wire import (
    MAX_FACINGS,
    MAX_PAYLOAD_BYTES,
    AudioLevels,
    CounterId,
    FacingCounts,
    ShelfState,
    from_json,
    parse,
    to_json,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def audio(**kw: object) -> AudioLevels:
    base: dict[str, object] = dict(
        site="shop-1",
        device="dev-1",
        source="mic0",
        seq=12,
        start=T0,
        seconds=60,
        duration_s=60.0,
        leq_dbfs=-31.5,
        laeq_dbfs=-34.25,
        leq_dbspl=62.5,
        laeq_dbspl=59.75,
        speech_ratio=0.25,
        events={"dog": 2, "glass": 1},
    )
    base.update(kw)
    return AudioLevels.model_validate(base)


def facing(i: int, **kw: object) -> dict[str, object]:
    d: dict[str, object] = dict(
        region="top",
        facing=f"f{i}",
        facing_empty=1,
        restocked=0,
        product_taken=1,
        empty_at_end=True,
    )
    d.update(kw)
    return d


def shelf(**kw: object) -> ShelfState:
    base: dict[str, object] = dict(
        site="shop-1",
        device="dev-1",
        source="cam0",
        seq=13,
        start=T0.isoformat(),
        seconds=60,
        facings=[facing(0), facing(1, empty_at_end=False)],
    )
    base.update(kw)
    return ShelfState.model_validate_json(json.dumps(base))


def test_topic_kinds_audio_and_shelf() -> None:
    for kind in ("audio", "shelf"):
        t = topic_for("shop-1", "dev-1", kind)
        assert parse_topic(t).kind == kind


@pytest.mark.parametrize(
    "message",
    [audio(), audio(leq_dbspl=None, laeq_dbspl=None, speech_ratio=None, events={}), shelf()],
)
def test_round_trip_through_parse(message: AudioLevels | ShelfState) -> None:
    topic = topic_for("shop-1", "dev-1", message.kind)
    back = parse(topic, to_json(message))
    assert back == message
    assert type(back) is type(message)


def test_shelf_facings_keep_their_counts() -> None:
    back = from_json(ShelfState, to_json(shelf()))
    assert back.facings[0] == FacingCounts(
        region=CounterId("top"),
        facing=CounterId("f0"),
        facing_empty=1,
        restocked=0,
        product_taken=1,
        empty_at_end=True,
    )
    assert back.facings[1].empty_at_end is False


def _payload(message: AudioLevels | ShelfState, **changes: object) -> bytes:
    d = json.loads(to_json(message))
    d.update(changes)
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"samples": [0.1, 0.2]}, "samples"),  # no field can carry sound
        ({"leq_dbfs": float("nan")}, "leq_dbfs"),
        ({"laeq_dbfs": 25.0}, "laeq_dbfs"),
        ({"leq_dbfs": -250.0}, "leq_dbfs"),
        ({"speech_ratio": 1.5}, "speech_ratio"),
        ({"duration_s": 61.0}, "duration_s is longer"),
        ({"leq_dbspl": None}, "go together"),
        ({"events": {f"k{i}": 1 for i in range(40)}}, "events"),
        ({"events": {"Speech, speaking": 1}}, "events"),
        ({"seq": "12"}, "seq"),
        ({"v": 2}, "unsupported schema version"),
    ],
)
def test_audio_refuses(changes: dict[str, object], where: str) -> None:
    with pytest.raises(WireError, match="invalid AudioLevels payload") as info:
        from_json(AudioLevels, _payload(audio(), **changes))
    assert where in str(info.value)


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"pixels": "AAAA"}, "pixels"),
        ({"facings": []}, "facings"),
        ({"facings": [facing(0), facing(0)]}, "appears twice"),
        ({"facings": [facing(0, crop="AAAA")]}, "crop"),
        ({"facings": [facing(0, facing_empty=-1)]}, "facing_empty"),
        ({"facings": [facing(0, empty_at_end="yes")]}, "empty_at_end"),
        ({"facings": [facing(i) for i in range(MAX_FACINGS + 1)]}, "facings"),
    ],
)
def test_shelf_refuses(changes: dict[str, object], where: str) -> None:
    with pytest.raises(WireError, match="invalid ShelfState payload") as info:
        from_json(ShelfState, _payload(shelf(), **changes))
    assert where in str(info.value)


def test_a_huge_list_is_refused_before_parsing() -> None:
    payload = _payload(shelf(), facings=[facing(i) for i in range(5000)])
    assert len(payload) > MAX_PAYLOAD_BYTES
    with pytest.raises(WireError, match="payload too large"):
        parse(topic_for("shop-1", "dev-1", "shelf"), payload)


def test_payload_must_match_its_topic() -> None:
    with pytest.raises(WireError, match="invalid ShelfState payload"):
        parse(topic_for("shop-1", "dev-1", "shelf"), to_json(audio()))
    with pytest.raises(WireError, match="came on the topic of shop-1/dev-2"):
        parse(topic_for("shop-1", "dev-2", "audio"), to_json(audio()))
