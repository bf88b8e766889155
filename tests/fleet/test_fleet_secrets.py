"""The fleet's secrets stay out of everything it shows: the broker password and the
database password, given in a file, in the environment or (still accepted, with a warning)
in the URL, never appear in `fleet serve`'s startup line, its verbose log, the health
document, an error of `fleet query`, a config's repr, or the process's command line as the
README starts it. PostgreSQL takes its password from PGPASSWORD or PGPASSFILE when the URL
has none: checked against a cluster that wants a password (SCRAM)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from edgetally import ports
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.auth import add_token
from edgetally.fleet.store.base import StoreError
from edgetally.fleet.store.connect import open_store
from edgetally.ports import free_port

from tests.conftest import Broker
from tests.fleet.conftest import PgServer, _pg_bin
from tests.fleet.test_broker_support import start_secure_broker

pytestmark = pytest.mark.slow

PG_PASSWORD = "pg-Pass-7f3a9c"
BROKER_PASSWORD = "broker-Pass-51de0b"


@dataclass
class PasswordPg:
    """A PostgreSQL cluster whose user ``edgetally`` needs the password PG_PASSWORD."""

    port: int

    def url(self, login: str = "edgetally", query: str = "") -> str:
        return f"postgresql://{login}@127.0.0.1:{self.port}/postgres{query}"


@pytest.fixture(scope="module")
def pg() -> Iterator[PasswordPg]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries missing: ./run install installs them")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="edgetally-pgpw-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        try:
            who = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chmod(root, 0o755)
        os.chown(root, who.pw_uid, who.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    port = free_port()
    server = PgServer(bindir, root, port, as_user)
    data = root / "data"
    server.run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "edgetally",
        "-A",
        "scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    server.run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        opts,
        "-w",
        "-l",
        str(root / "log"),
        "start",
    )
    try:
        yield PasswordPg(port)
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _no_pg_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))  # not ~/.pgpass


def _pgpass(tmp_path: Path, pg: PasswordPg) -> Path:
    path = tmp_path / "pgpass"
    path.write_text(f"127.0.0.1:{pg.port}:*:edgetally:{PG_PASSWORD}\n")
    path.chmod(0o600)  # libpq ignores a pgpass file others may read
    return path


def test_pgpassword_and_pgpassfile_give_the_store_its_password(
    pg: PasswordPg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_pg_env(monkeypatch, tmp_path)
    with pytest.raises(StoreError) as refused:
        open_store(pg.url())
    said = str(refused.value)
    assert said.startswith(f"cannot connect to {pg.url()}: ") and "\n" not in said
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    open_store(pg.url()).close()
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(_pgpass(tmp_path, pg)))
    open_store(pg.url()).close()


@pytest.mark.parametrize(
    ("login", "query", "secret"),
    [
        ("edgetally", "?password=wrong-Pw-77", "wrong-Pw-77"),
        ("edgetally:wrong-Pw-78", "", "wrong-Pw-78"),
        ("edgetally:se%ZZcret-79", "", "se%ZZcret-79"),  # libpq quotes a bad %-escape
    ],
)
def test_fleet_query_errors_never_show_the_database_password(
    pg: PasswordPg, tmp_path: Path, login: str, query: str, secret: str
) -> None:
    env = {**os.environ, "PGPASSFILE": str(tmp_path / "none")}
    env.pop("PGPASSWORD", None)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetally",
            "fleet",
            "query",
            "traffic",
            "--db",
            pg.url(login, query),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("edgetally: error: cannot connect to postgresql://edgetally")
    assert len(r.stderr.strip().splitlines()) == 1
    assert secret not in r.stderr + r.stdout and "***" in r.stderr


@dataclass
class Run:
    cmdline: str
    health: str
    stderr: str


def _serve(args: list[str], env: dict[str, str], tokens: Path, tmp_path: Path) -> Run:
    """`edgetally -v fleet serve ARGS` until its API answers: its command line as ps reads
    it, the health document, and (after SIGTERM) all it wrote to stderr."""
    port = free_port()
    err = tmp_path / f"serve-{port}.err"
    analyst = add_token(tokens, f"ann-{port}", "analyst")
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgetally",
                "-v",
                "fleet",
                "serve",
                *args,
                "--http",
                f"127.0.0.1:{port}",
                "--tokens",
                str(tokens),
            ],
            stdout=sink,
            stderr=sink,
            env=env,
        )
    try:
        if not ports.wait_for_port(port, 60):
            raise AssertionError(f"fleet serve did not listen: {err.read_text()}")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        health = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/health",
            headers={"Authorization": f"Bearer {analyst}"},
            timeout=30,
        )
        assert health.status_code == 200, health.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return Run(cmdline, health.text, err.read_text())


@pytest.mark.parametrize("way", ["files", "environment", "urls"])
def test_a_real_fleet_serve_shows_no_secret(
    way: str, pg: PasswordPg, mosquitto: Broker, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env["PGPASSFILE"] = str(tmp_path / "none")
    broker = f"mqtt://fleet@127.0.0.1:{mosquitto.port}"  # anonymous: takes any password
    db = pg.url()
    args: list[str]
    if way == "files":  # as the README shows it
        pw = tmp_path / "fleet.pw"
        pw.write_text(BROKER_PASSWORD + "\n")
        env["PGPASSFILE"] = str(_pgpass(tmp_path, pg))
        args = ["--broker", broker, "--broker-password-file", str(pw), "--db", db]
    elif way == "environment":
        env["EDGETALLY_BROKER_PASSWORD"] = BROKER_PASSWORD
        env["PGPASSWORD"] = PG_PASSWORD
        args = ["--broker", broker, "--db", db]
    else:  # still taken, with a warning that ps shows them
        broker = f"mqtt://fleet:{BROKER_PASSWORD}@127.0.0.1:{mosquitto.port}"
        args = ["--broker", broker, "--db", pg.url(query=f"?password={PG_PASSWORD}")]
    run = _serve(args, env, tmp_path / "tokens.json", tmp_path)
    startup = [line for line in run.stderr.splitlines() if line.startswith("fleet: broker")]
    store = pg.url(query="?password=***" if way == "urls" else "")
    assert len(startup) == 1 and startup[0].startswith(
        f"fleet: broker mqtt://fleet@127.0.0.1:{mosquitto.port}, store {store}, API http://"
    ), startup
    assert "INFO edgetally.fleet.server: fleet: store" in run.stderr  # the verbose log
    health = json.loads(run.health)
    assert health["ok"] is True and health["store"].startswith("postgresql://edgetally@")
    for secret in (BROKER_PASSWORD, PG_PASSWORD):
        assert secret not in run.stderr and secret not in run.health
        if way != "urls":
            assert secret not in run.cmdline, run.cmdline
    warned = [line for line in run.stderr.splitlines() if "ps shows to every user" in line]
    if way == "urls":
        assert len(warned) == 2
        assert "--broker-password-file FILE or EDGETALLY_BROKER_PASSWORD" in warned[0]
        assert "PGPASSFILE" in warned[1] and "PGPASSWORD" in warned[1]
    else:
        assert warned == []


def test_the_broker_password_from_the_environment_logs_the_fleet_in(tmp_path: Path) -> None:
    sb = start_secure_broker(tmp_path, "shop1/cam1")
    try:
        env = {**os.environ, "EDGETALLY_BROKER_PASSWORD": sb.cfg.fleet_password}
        url = f"mqtts://{sb.cfg.fleet_user}@127.0.0.1:{sb.port}"
        port = free_port()
        tokens = tmp_path / "tokens.json"
        analyst = add_token(tokens, "ann", "analyst")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "serve",
                "--broker",
                url,
                "--ca",
                str(sb.cfg.ca_cert),
                "--db",
                str(tmp_path / "f.duckdb"),
                "--http",
                f"127.0.0.1:{port}",
                "--tokens",
                str(tokens),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert ports.wait_for_port(port, 60)
            headers = {"Authorization": f"Bearer {analyst}"}
            connected = False
            for _ in range(300):  # a generous wait for the login
                ingest = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/health", headers=headers
                ).json()["ingest"]
                connected = bool(ingest["connected"])
                if connected:
                    break
                time.sleep(0.1)
            assert connected, "the fleet did not log in with EDGETALLY_BROKER_PASSWORD"
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        assert sb.cfg.fleet_password.encode() not in err
        # set, but the URL names no user to log in as: one line
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetally",
                "fleet",
                "serve",
                "--broker",
                f"mqtts://127.0.0.1:{sb.port}",
                "--db",
                str(tmp_path / "g.duckdb"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert r.returncode == 1 and r.stderr.startswith(
            "edgetally: error: EDGETALLY_BROKER_PASSWORD is set: give the broker user in --broker"
        )
    finally:
        sb.broker.stop()


def test_no_secret_in_a_fleet_config_repr(tmp_path: Path) -> None:
    config = FleetConfig.of(
        f"mqtts://fleet:{BROKER_PASSWORD}@fleet.lan:8883",
        f"postgresql://fleet@db:5432/fleet?sslmode=require&password={PG_PASSWORD}",
        read_url=f"postgresql://reader:{PG_PASSWORD}r@replica/fleet",
        public_url=f"https://dl:{PG_PASSWORD}p@fleet.example",
    )
    for text in (repr(config), str(config), repr(config.broker), str(config.broker)):
        assert BROKER_PASSWORD not in text and PG_PASSWORD not in text
    assert "password=***" in repr(config) and "reader:***@replica" in repr(config)
