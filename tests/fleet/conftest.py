"""Fixtures of the fleet tests: a real PostgreSQL (initdb + pg_ctl in a temp folder, on a
free loopback port), skipped cleanly when the server binaries are absent."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.records import IngestBatch, Seen
from edgetally.models.topics import DeviceId, SiteId
from edgetally.models.wire import Aggregate, CounterId, DwellStats, Seq, SourceId
from edgetally.ports import free_port

SAMPLE_T0 = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


def _pg_bin() -> Path | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists() and Path(cand, "pg_ctl").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgServer:
    """A throwaway PostgreSQL cluster; :meth:`new_database` gives each test its own."""

    def __init__(self, bindir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.as_user = as_user
        self._n = itertools.count()

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://edgetally@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries missing: ./run install installs Debian's postgresql"
        )
    pytest.importorskip("psycopg")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="edgetally-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chmod(root, 0o755)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    server = PgServer(bindir, root, port, as_user)
    data = root / "data"
    server.run(
        str(bindir / "initdb"), "-D", str(data), "-U", "edgetally", "-A", "trust", "-E", "UTF8"
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    server.run(
        str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(root / "log"), "start"
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.new_database()


@pytest.fixture(params=["duckdb", "postgres"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database location for each store: a DuckDB file, then a PostgreSQL URL."""
    if request.param == "duckdb":
        return str(tmp_path / "fleet.duckdb")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def wait() -> Callable[[Callable[[], bool], float], bool]:
    def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    return _wait


def _make_aggregates(n_devices: int = 4, minutes: int = 150, seed: int = 3) -> list[Aggregate]:
    rng = random.Random(seed)
    out: list[Aggregate] = []
    for d in range(n_devices):
        seq = 0
        for m in range(minutes):
            for line in ("door", "queue"):
                occ = rng.uniform(0, 4)
                visits = rng.randint(0, 3)
                med = rng.uniform(1, 60)
                out.append(
                    Aggregate(
                        site=SiteId(f"site-{d % 2}"),
                        device=DeviceId(f"dev-{d}"),
                        source=SourceId("cam0"),
                        line=CounterId(line),
                        seq=Seq(seq),
                        start=SAMPLE_T0 + timedelta(minutes=m),
                        seconds=60,
                        in_count=rng.randint(0, 9),
                        out_count=rng.randint(0, 9),
                        occupancy_mean=occ,
                        occupancy_peak=int(occ) + 1,
                        dwell=None
                        if visits == 0
                        else DwellStats(count=visits, median_s=med, p90_s=med * 2),
                        shelf_events={"gap_opened": 1} if m % 10 == 0 else {},
                        audio_events={"glass_break": 2} if m % 25 == 0 else {},
                    )
                )
                seq += 1
    return out


def _write_all(store: Store, aggs: list[Aggregate], chunk: int = 400) -> tuple[int, int]:
    new = dup = 0
    for i in range(0, len(aggs), chunk):
        part = aggs[i : i + chunk]
        r = store.write(
            IngestBatch(
                aggregates=tuple(part),
                seen=tuple(Seen(a.site, a.device, a.start) for a in part),
            )
        )
        new += r.aggregates_new
        dup += r.aggregates_duplicate
    return new, dup


@pytest.fixture(scope="session")
def make_aggregates() -> Callable[..., list[Aggregate]]:
    """``make_aggregates(n_devices, minutes, seed)``: 1-minute buckets from SAMPLE_T0."""
    return _make_aggregates


@pytest.fixture(scope="session")
def write_all() -> Callable[..., tuple[int, int]]:
    """``write_all(store, aggregates, chunk)`` -> (new, duplicate)."""
    return _write_all
