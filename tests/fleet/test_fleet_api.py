"""The analyst API over a real DuckDB store, and `edgetally fleet query` on the same data."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from edgetally.fleet.api import create_app
from edgetally.fleet.api_context import FleetContext
from edgetally.fleet.store import open_store
from edgetally.models.wire import Aggregate
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def db(
    tmp_path_factory: pytest.TempPathFactory,
    make_aggregates: Callable[..., list[Aggregate]],
    write_all: Callable[..., tuple[int, int]],
) -> Path:
    path = tmp_path_factory.mktemp("api") / "fleet.duckdb"
    store = open_store(str(path))
    write_all(store, make_aggregates(n_devices=3, minutes=90))
    store.close()
    return path


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    store = open_store(str(db), read_only=True)
    with TestClient(create_app(FleetContext(store=store, max_rows=500))) as c:
        yield c
    store.close()


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


def edgetally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_query_gives_the_api_answer(client: TestClient, db: Path) -> None:
    params = {"interval": "hour", "site": "site-1", "line": "door"}
    api_rows = client.get("/api/v1/traffic", params=params).json()["rows"]
    cli = edgetally(
        "fleet",
        "query",
        "traffic",
        "--db",
        str(db),
        "--interval",
        "hour",
        "--site",
        "site-1",
        "--line",
        "door",
        "--json",
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["rows"] == api_rows
    table = edgetally(
        "fleet", "query", "traffic", "--db", str(db), "--site", "site-1", "--line", "door"
    )
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["bucket", "site", "device", "line", "in", "out"]
    assert len(lines) == 1 + len(api_rows)
    assert lines[1].split()[4] == str(api_rows[0]["in"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--interval", "week"], "--interval"),
        (["--from", "soon"], "--from"),
        (["--site", "a/b"], "site"),
        (["--db", "/nonexistent/f.duckdb"], "no fleet database"),
        (["--db", "x.duckdb", "--api", "http://127.0.0.1:1"], "exactly one"),
        (["--api", "http://127.0.0.1:1"], "cannot reach"),
    ],
)
def test_cli_bad_input_is_one_line(db: Path, args: list[str], needle: str) -> None:
    if "--db" not in args and "--api" not in args:
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
