"""The analyst API over a real DuckDB store and a real PostgreSQL, and `edgetally fleet query`
on the same data (from the database and through the API) giving the API's answers."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import uvicorn
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.auth import TokenStore, add_token, guard_prefix, install_auth
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.store.base import Store, is_postgres_url
from edgetally.fleet.store.connect import open_store
from edgetally.models.wire import Aggregate
from edgetally.ports import free_port
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def fleet_db(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> str:
    """A DuckDB file, then a PostgreSQL URL, holding the same sample aggregates."""
    if request.param == "duckdb":
        location = str(tmp_path_factory.mktemp("api") / "fleet.duckdb")
    else:
        location = request.getfixturevalue("pg_server").new_database()
    store = open_store(location)
    write_all(store, make_aggregates(n_devices=3, minutes=90))
    store.close()
    return location


@pytest.fixture
def store(fleet_db: str) -> Iterator[Store]:
    s = open_store(fleet_db, read_only=not is_postgres_url(fleet_db))
    yield s
    s.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(FleetContext(store=store, max_rows=500))) as c:
        yield c


def test_traffic_has_exactly_the_documented_shape(client: TestClient) -> None:
    r = client.get("/api/v1/traffic", params={"interval": "15min", "site": "site-0"})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["rows"]
    assert body["rows"]
    for row in body["rows"]:
        assert list(row) == ["bucket", "site", "device", "line", "in", "out"]
        assert row["bucket"].endswith("Z") and row["site"] == "site-0"
        assert isinstance(row["in"], int) and isinstance(row["out"], int)
    # omitted filters mean all; from/to narrow; a narrower query sums to less
    everything = client.get("/api/v1/traffic", params={"interval": "day"}).json()["rows"]
    assert {r["device"] for r in everything} == {"dev-0", "dev-1", "dev-2"}
    part = client.get(
        "/api/v1/traffic",
        params={"interval": "day", "from": "2024-05-06T08:30:00Z", "to": "2024-05-06T09:00:00"},
    ).json()["rows"]
    assert 0 < sum(r["in"] for r in part) < sum(r["in"] for r in everything)


def test_exports_carry_the_same_rows(client: TestClient) -> None:
    params = {"interval": "hour", "device": "dev-1"}
    rows = client.get("/api/v1/traffic", params=params).json()["rows"]
    r = client.get("/api/v1/traffic", params={**params, "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    got = list(csv.DictReader(io.StringIO(r.text)))
    assert [(g["bucket"], int(g["in"]), int(g["out"])) for g in got] == [
        (x["bucket"], x["in"], x["out"]) for x in rows
    ]
    r = client.get("/api/v1/traffic", params={**params, "format": "parquet"})
    table = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert [(t["line"], t["in"], t["out"]) for t in table] == [
        (x["line"], x["in"], x["out"]) for x in rows
    ]


def test_occupancy_dwell_devices_and_docs(client: TestClient) -> None:
    occ = client.get("/api/v1/occupancy", params={"device": "dev-0", "line": "queue"}).json()
    assert occ["rows"] and set(occ["rows"][0]) >= {"occupancy_mean", "occupancy_peak"}
    dw = client.get("/api/v1/dwell", params={"interval": "day"}).json()
    assert dw["rows"] and all(r["visits"] > 0 for r in dw["rows"])
    devs = client.get("/api/v1/devices").json()["rows"]
    assert [d["device"] for d in devs] == ["dev-0", "dev-2", "dev-1"]  # ordered by site
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/traffic", "/api/v1/occupancy", "/api/v1/dwell", "/api/v1/devices"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "week"},
        {"from": "yesterday"},
        {"site": "a/b"},
        {"device": "x" * 100},
        {"format": "xlsx"},
    ],
)
def test_bad_parameters_are_422(client: TestClient, params: dict[str, str]) -> None:
    r = client.get("/api/v1/traffic", params=params)
    assert r.status_code == 422


def test_too_many_rows_is_413_not_a_crash(client: TestClient) -> None:
    r = client.get("/api/v1/traffic", params={"interval": "minute"})
    assert r.status_code == 413
    assert "narrow it" in r.json()["detail"]


def edgetally(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )


def parse_table(text: str) -> list[dict[str, str]]:
    """The command's table (columns split on runs of spaces; no value here has spaces)."""
    lines = text.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[1:]]


def as_text(rows: list[dict[str, object]]) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in r.items()} for r in rows]


@pytest.mark.parametrize(
    "flags",
    [
        {"interval": "hour", "site": "site-1", "line": "door"},
        {"interval": "15min", "device": "dev-2", "from": "2024-05-06T09:00:00Z"},
        {"interval": "day"},
    ],
)
def test_cli_query_gives_the_api_answer(
    client: TestClient, fleet_db: str, flags: dict[str, str]
) -> None:
    api_rows = client.get("/api/v1/traffic", params=flags).json()["rows"]
    assert api_rows
    args = ["fleet", "query", "traffic", "--db", fleet_db]
    for key, value in flags.items():
        args += [f"--{key}", value]
    as_json = edgetally(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["rows"] == api_rows
    table = edgetally(*args)
    assert table.returncode == 0, table.stderr
    assert parse_table(table.stdout) == as_text(api_rows)


@pytest.fixture
def live_api(store: Store) -> Iterator[str]:
    """The same app over HTTP on loopback, for ``fleet query --api``."""
    yield from _serve(create_app(FleetContext(store=store)))


def _serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_cli_query_through_the_api(client: TestClient, live_api: str, tmp_path: Path) -> None:
    flags = {"interval": "hour", "device": "dev-0", "line": "queue"}
    occ = client.get("/api/v1/occupancy", params=flags).json()["rows"]
    args = ["fleet", "query", "occupancy", "--api", live_api]
    for key, value in flags.items():
        args += [f"--{key}", value]
    r = edgetally(*args)
    assert r.returncode == 0, r.stderr
    assert parse_table(r.stdout) == as_text(occ)
    out = tmp_path / "occ.parquet"
    r = edgetally(*args, "--format", "parquet", "--output", str(out))
    assert r.returncode == 0, r.stderr
    got = pq.read_table(out).to_pylist()
    assert [(g["device"], g["occupancy_peak"]) for g in got] == [
        (o["device"], o["occupancy_peak"]) for o in occ
    ]
    devices = edgetally("fleet", "query", "devices", "--api", live_api, "--json")
    assert json.loads(devices.stdout) == client.get("/api/v1/devices").json()


def test_cli_query_through_an_api_with_tokens(
    tmp_path: Path,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> None:
    store = open_store(str(tmp_path / "fleet.duckdb"))
    write_all(store, make_aggregates(n_devices=2, minutes=30))
    client = TestClient(create_app(FleetContext(store=store)))
    tokens = tmp_path / "tokens.json"
    analyst = add_token(tokens, "ann", "analyst")
    device = add_token(tokens, "box", "device")
    app = create_app(FleetContext(store=store))
    install_auth(app, TokenStore.load(tokens))
    guard_prefix(app, "/api/v1", "analyst")
    served = _serve(app)
    api = next(served)
    try:
        args = ["fleet", "query", "traffic", "--api", api, "--interval", "day", "--json"]
        want = client.get("/api/v1/traffic", params={"interval": "day"}).json()
        for r in (
            edgetally(*args, "--token", analyst),
            edgetally(*args, env={"EDGETALLY_TOKEN": analyst}),
        ):
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout) == want
        cases: tuple[tuple[list[str], dict[str, str], str], ...] = (
            ([], {}, "wants a token: pass --token"),
            (["--token", "not-a-token"], {}, "refused the token"),
            (["--token", device], {}, "403"),
        )
        for extra, env, needle in cases:
            r = edgetally(*args, *extra, env={"EDGETALLY_TOKEN": "", **env})
            assert r.returncode == 1 and needle in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        devices = edgetally("fleet", "query", "devices", "--api", api, "--token", analyst)
        assert devices.returncode == 0, devices.stderr
    finally:
        next(served, None)
        store.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "week"], "--interval"),
        (["--from", "soon"], "--from"),
        (["--from", "0001-01-01T00:00:00+01:00"], "between 1970-01-01"),
        (["--to", "9999-12-31T23:00:00-05:00"], "--to"),
        (["--site", "a/b"], "site"),
        (["--db", "/nonexistent/f.duckdb"], "no fleet database"),
        (["--db", "x.duckdb", "--api", "http://127.0.0.1:1"], "exactly one"),
        (["--api", "http://127.0.0.1:1"], "cannot reach"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    if "--db" not in args and "--api" not in args:
        db = tmp_path / "fleet.duckdb"
        open_store(str(db)).close()
        args = [*args, "--db", str(db)]
    r = edgetally("fleet", "query", "traffic", *args)
    assert r.returncode == 1
    assert r.stderr.startswith("edgetally: error: ") and needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_rejects_bad_addresses(tmp_path: Path) -> None:
    for args, needle in (
        (["--broker", "http://x"], "broker URL"),
        (["--http", "host:notaport"], "HTTP address"),
        (["--db", "mysql://x"], "unsupported database URL"),
    ):
        r = edgetally("fleet", "serve", "--db", str(tmp_path / "f.duckdb"), *args)
        assert r.returncode == 1, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr


def _summed(
    rows: list[dict[str, Any]], keys: tuple[str, ...], values: tuple[str, ...]
) -> dict[tuple[Any, ...], list[float]]:
    """``values`` of the per-device rows summed per ``keys``."""
    out: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        acc = out.setdefault(tuple(r[k] for k in keys), [0.0] * len(values))
        for i, v in enumerate(values):
            acc[i] += r[v]
    return out


GROUP_CASES = [
    {"interval": "15min"},  # from the stored aggregates
    {"interval": "hour"},  # the hourly rollup as it is
    {"interval": "day", "line": "door"},  # the daily rollup, grouped
    {"interval": "hour", "from": "2024-05-06T08:10:00Z"},  # off the rollup's edges: aggregates
]


@pytest.mark.parametrize("params", GROUP_CASES)
def test_grouped_traffic_is_the_sum_of_the_device_rows(
    client: TestClient, params: dict[str, str]
) -> None:
    per_device = client.get("/api/v1/traffic", params=params).json()["rows"]
    assert len({r["device"] for r in per_device}) == 3
    for group, keys in (("site", ("bucket", "site")), ("fleet", ("bucket",))):
        rows = client.get("/api/v1/traffic", params={**params, "group": group}).json()["rows"]
        for row in rows:
            assert list(row) == ["bucket", "site", "device", "line", "in", "out"]
            assert row["device"] == row["line"] == "*"
            assert (row["site"] == "*") == (group == "fleet")
            assert isinstance(row["in"], int)
        got = {tuple(r[k] for k in keys): [r["in"], r["out"]] for r in rows}
        assert got == _summed(per_device, keys, ("in", "out"))
        assert [tuple(r[k] for k in keys) for r in rows] == sorted(got)  # ordered


def test_grouped_exports_and_no_413_for_the_fleet(client: TestClient) -> None:
    # one row per device and line per minute is over this app's 500-row limit; the fleet's
    # one row per minute is not
    assert client.get("/api/v1/traffic", params={"interval": "minute"}).status_code == 413
    params = {"interval": "minute", "group": "fleet"}
    rows = client.get("/api/v1/traffic", params=params).json()["rows"]
    assert len(rows) == 90
    csv_rows = list(
        csv.DictReader(
            io.StringIO(client.get("/api/v1/traffic", params={**params, "format": "csv"}).text)
        )
    )
    assert [(c["bucket"], c["site"], int(c["in"])) for c in csv_rows] == [
        (r["bucket"], "*", r["in"]) for r in rows
    ]
    r = client.get("/api/v1/traffic", params={**params, "format": "parquet"})
    assert pq.read_table(io.BytesIO(r.content)).to_pylist()[0]["device"] == "*"
    assert client.get("/api/v1/traffic", params={"group": "line"}).status_code == 422


def test_grouped_occupancy_and_dwell(client: TestClient) -> None:
    params = {"interval": "hour"}
    occ = client.get("/api/v1/occupancy", params=params).json()["rows"]
    grouped = client.get("/api/v1/occupancy", params={**params, "group": "site"}).json()["rows"]
    want = _summed(occ, ("bucket", "site"), ("occupancy_mean",))
    assert {(r["bucket"], r["site"]) for r in grouped} == set(want)
    for r in grouped:
        assert r["occupancy_mean"] == pytest.approx(want[(r["bucket"], r["site"])][0], abs=1e-3)
        assert r["occupancy_peak"] is None
    dw = client.get("/api/v1/dwell", params={"interval": "day"}).json()["rows"]
    fleet = client.get("/api/v1/dwell", params={"interval": "day", "group": "fleet"}).json()
    (total,) = fleet["rows"]
    assert total["visits"] == sum(r["visits"] for r in dw)
    weighted = sum(r["median_s"] * r["visits"] for r in dw) / total["visits"]
    assert total["median_s"] == pytest.approx(weighted, rel=1e-4)


def test_redelivered_aggregates_do_not_count_twice_in_totals(
    store_db: str,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> None:
    aggs = make_aggregates(n_devices=2, minutes=70, seed=5)
    store = open_store(store_db)
    try:
        write_all(store, aggs)
        assert write_all(store, aggs[::3], 50)[0] == 0  # redelivered: all duplicates
        with TestClient(create_app(FleetContext(store=store))) as c:
            for interval in ("15min", "hour", "day"):
                params = {"interval": interval, "group": "fleet"}
                rows = c.get("/api/v1/traffic", params=params).json()["rows"]
                assert sum(r["in"] for r in rows) == sum(a.in_count for a in aggs)
                assert sum(r["out"] for r in rows) == sum(a.out_count for a in aggs)
    finally:
        store.close()


def test_cli_query_group_gives_the_api_answer(client: TestClient, fleet_db: str) -> None:
    params = {"interval": "hour", "group": "site"}
    api_rows = client.get("/api/v1/traffic", params=params).json()["rows"]
    r = edgetally(
        "fleet",
        "query",
        "traffic",
        "--db",
        fleet_db,
        "--group",
        "site",
        "--interval",
        "hour",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == api_rows
    bad = edgetally("fleet", "query", "traffic", "--db", fleet_db, "--group", "line")
    assert bad.returncode == 1 and "--group" in bad.stderr
