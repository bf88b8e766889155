"""Whatever an analyst puts in the query string, the API answers without a server error:
every endpoint under /api/v1 and every one of its query parameters (read from the app's own
OpenAPI document, so a new endpoint is covered without touching this file), with arbitrary
text, numbers, and times at the ends of the calendar with any offset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.store.connect import open_store
from edgetally.models.wire import Aggregate
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> Iterator[TestClient]:
    store = open_store(str(tmp_path_factory.mktemp("params") / "fleet.duckdb"))
    write_all(store, make_aggregates(n_devices=2, minutes=30))
    app = create_app(FleetContext(store=store, max_rows=1_000))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    store.close()


def endpoints(client: TestClient) -> dict[str, list[str]]:
    """Every GET path under /api/v1 and the names of its query parameters."""
    spec = client.get("/openapi.json").json()
    out: dict[str, list[str]] = {}
    for path, ops in spec["paths"].items():
        if path.startswith("/api/v1/") and "get" in ops:
            params = ops["get"].get("parameters", [])
            out[path] = [p["name"] for p in params if p["in"] == "query"]
    return out


def _offset(sign: str, hours: int, minutes: int) -> str:
    return f"{sign}{hours:02d}:{minutes:02d}"


OFFSETS = st.one_of(
    st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00", "+23:59", "-23:59"]),
    st.builds(_offset, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)),
)
TIMES = st.builds(
    lambda when, offset: when.isoformat() + offset,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    OFFSETS,
)
EDGES = st.sampled_from(
    [
        "0001-01-01",
        "9999-12-31",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
        "9999-12-31T23:59:59.999999-23:59",
        "1969-12-31T23:59:59Z",
        "2024-02-30",
        "2024-05-06T08:00:00+24:00",
    ]
)
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
NUMBERS = st.one_of(
    st.integers().map(str),
    st.sampled_from(["0", "-1", "1e308", "nan", "inf", "99999999999999999999", "-0"]),
)
VALID = st.sampled_from(
    [
        "site-0",
        "dev-1",
        "door",
        "hour",
        "day",
        "15min",
        "minute",
        "csv",
        "parquet",
        "json",
        "site",
        "fleet",
        "device",
        "100",
        "2024-05-06T08:00:00Z",
    ]
)
VALUES = st.one_of(VALID, TIMES, EDGES, NUMBERS, TEXT)


@st.composite
def requests(draw: st.DrawFn, paths: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    path = draw(st.sampled_from(sorted(paths)))
    names = paths[path]
    chosen = draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    return path, {name: draw(VALUES) for name in chosen}


def test_every_endpoint_has_its_parameters_listed(client: TestClient) -> None:
    paths = endpoints(client)
    for path in (
        "/api/v1/traffic",
        "/api/v1/energy",
        "/api/v1/audio",
        "/api/v1/shelf",
        "/api/v1/events",
        "/api/v1/devices",
        "/api/v1/dead-letters",
    ):
        assert path in paths
    assert {"from", "to", "site", "interval", "format", "group"} <= set(paths["/api/v1/traffic"])


def test_no_parameter_is_a_server_error(client: TestClient) -> None:
    paths = endpoints(client)

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(requests(paths))
    @example(("/api/v1/traffic", {"from": "0001-01-01T00:00:00+01:00"}))
    @example(("/api/v1/traffic", {"to": "9999-12-31T23:00:00-05:00"}))
    @example(("/api/v1/energy", {"from": "0001-01-01T00:00:00+14:00"}))
    @example(("/api/v1/audio", {"to": "9999-12-31T23:59:59-23:59"}))
    def check(request: tuple[str, dict[str, str]]) -> None:
        path, params = request
        r = client.get(path, params=params)
        assert r.status_code < 500, (path, params, r.status_code, r.text[:300])

    check()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("from", "0001-01-01T00:00:00+01:00"),
        ("to", "9999-12-31T23:00:00-05:00"),
        ("from", "1900-01-01"),
        ("to", "2500-01-01T00:00:00Z"),
    ],
)
def test_times_outside_the_window_are_422_naming_the_parameter(
    client: TestClient, name: str, value: str
) -> None:
    r = client.get("/api/v1/traffic", params={name: value})
    assert r.status_code == 422
    detail: list[dict[str, Any]] = r.json()["detail"]
    assert detail[0]["loc"][-1] == name
    assert "1970-01-01" in detail[0]["msg"] and "2200-01-01" in detail[0]["msg"]


def test_times_inside_the_window_with_offsets_filter_as_utc(client: TestClient) -> None:
    everything = client.get("/api/v1/traffic", params={"interval": "day"}).json()["rows"]
    shifted = client.get(
        "/api/v1/traffic",
        params={
            "interval": "day",
            "from": "1970-01-01T01:00:00+01:00",
            "to": "2199-12-31T19:00:00-05:00",
        },
    )
    assert shifted.status_code == 200 and shifted.json()["rows"] == everything


def test_an_empty_fleet_answers_every_endpoint(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "empty.duckdb"))
    try:
        with TestClient(create_app(FleetContext(store=store)), raise_server_exceptions=False) as c:
            for path in endpoints(c):
                assert c.get(path).status_code == 200, path
    finally:
        store.close()
