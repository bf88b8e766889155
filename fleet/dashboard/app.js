// The fleet dashboard: traffic, fleet and energy views over the fleet's own API.
// State lives in the URL hash (#view?key=value&...), so a view can be linked and reloaded.
// The server aggregates every series (interval=hour up to a week, day beyond), and sums the
// devices and lines too (group=site for a site, group=fleet for all sites) unless a device
// is chosen (then the page sums that device's lines per bucket itself).
"use strict";

const API = new URL("../api/v1/", location.href);
const ROOT = new URL("../", location.href);
const TOKEN_KEY = "edgetally.token";
const DAY_MS = 86400e3;
const WEEK_MS = 7 * DAY_MS;
const $ = (sel) => document.querySelector(sel);

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

// ------------------------------------------------------------------ token and requests

let tokenWait = null;

function askToken(reason) {
  if (tokenWait) return tokenWait;
  const form = $("#token-form");
  $("#token-reason").textContent = reason;
  form.hidden = false;
  document.body.dataset.state = "token";
  $("#token-input").focus();
  tokenWait = new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const value = $("#token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("#token-input").value = "";
      form.hidden = true;
      document.body.dataset.state = "loading";
      tokenWait = null;
      showTokenButton();
      resolve();
    };
  });
  return tokenWait;
}

function showTokenButton() {
  $("#forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

// GET a JSON document; asks for a token on 401 and retries with it. With optional, a 404
// (an endpoint this fleet does not have) is null instead of an error.
async function getJson(url, { optional = false } = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch(url, { headers });
    if (resp.status === 401) {
      await askToken(token ? "That token was refused: enter another one."
        : "This fleet asks for a token.");
      continue;
    }
    if (resp.status === 404 && optional) return null;
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (_e) { /* not JSON */ }
      throw new ApiError(resp.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return resp.json();
  }
}

function apiUrl(name, params) {
  const url = new URL(name, API);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  return url;
}

const api = (name, params, opts) => getJson(apiUrl(name, params), opts);

// The paths this fleet serves, from its OpenAPI document (readable without a token), so
// that the page does not ask for what is not there (no events, rollouts not enabled).
// null when the document cannot be read: then every path is tried, a 404 meaning absent.
let knownPaths = null;

function apiPaths() {
  if (!knownPaths) {
    knownPaths = fetch(new URL("openapi.json", ROOT))
      .then((r) => (r.ok ? r.json() : null))
      .then((doc) => (doc && doc.paths ? new Set(Object.keys(doc.paths)) : null))
      .catch(() => null);
  }
  return knownPaths;
}

async function optionalGet(path, url) {
  const paths = await apiPaths();
  if (paths !== null && !paths.has(path)) return null;
  return getJson(url, { optional: true });
}

// ------------------------------------------------------------------ state in the hash

function readHash() {
  const raw = location.hash.replace(/^#/, "");
  const [view, query] = raw.split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  return { view: ["traffic", "fleet", "energy"].includes(view) ? view : "traffic", params };
}

function writeHash(view, params) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const next = `#${view}${q.toString() ? "?" + q : ""}`;
  if (location.hash !== next) location.hash = next;
}

function todayIso() {
  return new Date().toISOString().slice(0, 10);
}

// from/to (ISO, UTC) of the range ending with the day `end` (inclusive).
function rangeOf(params) {
  const days = Math.max(1, Math.min(366, Number(params.range) || 7));
  const end = /^\d{4}-\d{2}-\d{2}$/.test(params.end || "") ? params.end : todayIso();
  const to = Date.parse(`${end}T00:00:00Z`) + DAY_MS;
  const from = to - days * DAY_MS;
  const interval = days > 7 ? "day" : (params.interval === "day" ? "day" : "hour");
  return { days, end, from, to, interval };
}

const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

// ------------------------------------------------------------------ helpers

function fillSelect(select, values, allLabel, chosen) {
  const keep = chosen || "";
  select.textContent = "";
  select.appendChild(new Option(allLabel, ""));
  for (const v of values) select.appendChild(new Option(v, v));
  if (keep && !values.includes(keep)) select.appendChild(new Option(keep, keep));
  select.value = keep;
}

function setControls(form, params) {
  for (const [k, v] of Object.entries(params)) {
    const field = form.elements.namedItem(k);
    if (field && v !== undefined) field.value = v;
  }
}

// Sum the rows of each bucket: {bucket -> value}. `value(row)` picks the number.
function sumByBucket(rows, value) {
  const out = new Map();
  for (const r of rows) out.set(r.bucket, (out.get(r.bucket) || 0) + value(r));
  return [...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

// Visit-weighted mean of a dwell statistic per bucket.
function weightedByBucket(rows, key) {
  const acc = new Map();
  for (const r of rows) {
    const a = acc.get(r.bucket) || [0, 0];
    a[0] += r[key] * r.visits;
    a[1] += r.visits;
    acc.set(r.bucket, a);
  }
  return [...acc.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([b, [s, n]]) => [b, n > 0 ? s / n : 0]);
}

function table(node, head, rows) {
  node.textContent = "";
  const thead = node.createTHead().insertRow();
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h;
    thead.appendChild(th);
  }
  const body = node.createTBody();
  for (const cells of rows) {
    const tr = body.insertRow();
    for (const c of cells) {
      const td = tr.insertCell();
      if (c instanceof Node) td.appendChild(c);
      else if (typeof c === "number") td.textContent = Charts.fmt(c);
      else { td.textContent = c === null || c === undefined ? "–" : String(c); td.className = "text"; }
    }
  }
  // a column of words is left-aligned, header included
  [...thead.cells].forEach((th, i) => {
    const cells = [...body.rows].map((tr) => tr.cells[i]);
    if (cells.length && cells.every((td) => td.className === "text")) th.className = "text";
  });
}

function span(text, cls) {
  const s = document.createElement("span");
  s.textContent = text;
  if (cls) s.className = cls;
  return s;
}

function seriesTable(node, series) {
  const buckets = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort();
  const lookup = series.map((s) => new Map(s.points));
  table(node, ["bucket", ...series.map((s) => s.name)],
    buckets.map((b) => [b.replace("T", " ").slice(0, 16), ...lookup.map((m) =>
      (m.has(b) ? m.get(b) : null))]));
}

// ------------------------------------------------------------------ traffic

let lineChoices = { key: "", lines: new Set() };

async function renderTraffic(params, alive) {
  const form = $("#traffic-controls");
  const r = rangeOf(params);
  setControls(form, { range: String(r.days), interval: r.interval, end: r.end });
  form.elements.namedItem("interval").querySelector("[value=hour]").disabled = r.days > 7;

  // a device: its own rows; else the server's totals for the site or the whole fleet
  const group = params.device ? undefined : (params.site ? "site" : "fleet");
  const where = { site: params.site, device: params.device, interval: r.interval, group };
  const now = { ...where, from: iso(r.from), to: iso(r.to) };
  const prev = { ...where, from: iso(r.from - WEEK_MS), to: iso(r.to - WEEK_MS) };
  // totals name no line ("*"): the line picker offers those of the devices' rows per day
  // over the range's last week (one row per device and line a day)
  const lineRange = { from: iso(Math.max(r.from, r.to - WEEK_MS)), to: iso(r.to) };
  const step = r.interval === "hour" ? 3600e3 : DAY_MS;
  const domain = [r.from, r.to - step];

  const scope = params.line ? `line ${params.line}` : params.device ? `device ${params.device}`
    : params.site ? `site ${params.site}` : "the whole fleet";
  $("#traffic-caption").textContent = `${scope}, per ${r.interval}, ${iso(r.from).slice(0, 10)} ` +
    `to ${r.end} (UTC); dashed: the same range a week earlier, drawn over it; a break in ` +
    "a line: no data for that time.";

  // Every card asks for its own data at once and is drawn when they arrive.
  const pickers = api("devices").then((devices) => {
    if (!alive()) return;
    const sites = [...new Set(devices.rows.map((d) => d.site))].sort();
    fillSelect(form.elements.namedItem("site"), sites, "all sites", params.site);
    const onSite = devices.rows.filter((d) => !params.site || d.site === params.site);
    fillSelect(form.elements.namedItem("device"), onSite.map((d) => d.device), "all devices",
      params.device);
  });

  const inOut = Promise.all([
    api("traffic", { ...now, line: params.line }),
    api("traffic", { ...prev, line: params.line }),
    group ? api("traffic", { site: params.site, interval: "day", ...lineRange }) : null,
  ]).then(([cur, before, perLine]) => {
    if (!alive()) return;
    const key = `${params.site || ""}/${params.device || ""}`;
    if (lineChoices.key !== key) lineChoices = { key, lines: new Set() };
    const lineRows = perLine ? perLine.rows : [...cur.rows, ...before.rows];
    for (const row of lineRows) if (row.line !== "*") lineChoices.lines.add(row.line);
    fillSelect(form.elements.namedItem("line"), [...lineChoices.lines].sort(), "all lines",
      params.line);
    for (const dir of ["in", "out"]) {
      const series = [
        { name: `${dir}`, cls: dir, points: sumByBucket(cur.rows, (x) => x[dir]) },
        { name: `${dir}, previous week`, cls: "prev", dashed: true, shiftMs: WEEK_MS,
          points: sumByBucket(before.rows, (x) => x[dir]) },
      ];
      Charts.line($(`#chart-${dir}`), { label: `people ${dir}`, series, domain, step });
      seriesTable($(`#table-${dir}`), series);
    }
  });

  const occupancy = api("occupancy", now).then((occ) => {
    if (!alive()) return;
    const occSeries = [
      { name: "mean", cls: "c0", points: sumByBucket(occ.rows, (x) => x.occupancy_mean) },
    ];
    Charts.line($("#chart-occupancy"), { label: "occupancy", series: occSeries, domain, step,
      empty: "no zone reports occupancy in this range" });
    seriesTable($("#table-occupancy"), occSeries);
  });

  const dwell = api("dwell", now).then((answer) => {
    if (!alive()) return;
    const dwellSeries = [
      { name: "median s", cls: "c2", points: weightedByBucket(answer.rows, "median_s") },
      { name: "p90 s", cls: "c3", points: weightedByBucket(answer.rows, "p90_s") },
    ];
    Charts.line($("#chart-dwell"), { label: "dwell", series: dwellSeries, domain, step,
      empty: "no zone reports dwell in this range" });
    seriesTable($("#table-dwell"), dwellSeries);
  });

  const events = optionalGet("/api/v1/events", apiUrl("events", { ...now, line: params.line }))
    .then((answer) => {
      if (alive()) renderEvents(answer, domain);
    });

  await Promise.all([pickers, inOut, occupancy, dwell, events]);
}

// Events rows carry a family (shelf, audio) and an event name with a count per bucket.
function renderEvents(answer, domain) {
  const box = $("#events-box");
  const rows = answer && Array.isArray(answer.rows) ? answer.rows : [];
  box.hidden = rows.length === 0;
  box.dataset.available = answer ? "yes" : "no";
  if (rows.length === 0) return;
  const name = (r) => [r.family, r.event].filter(Boolean).join(" ") || "events";
  const names = [...new Set(rows.map(name))].sort();
  const series = names.slice(0, 6).map((n, i) => ({
    name: n, cls: `c${i}`, stem: true, points: sumByBucket(rows.filter((r) => name(r) === n),
      (x) => Number(x.count ?? x.n ?? 0)),
  }));
  Charts.line($("#chart-events"), { label: "events", series, domain });
  seriesTable($("#table-events"), series);
}

// ------------------------------------------------------------------ fleet

function ago(isoText) {
  if (!isoText) return "never";
  const t = Date.parse(isoText.endsWith("Z") || isoText.includes("+") ? isoText : isoText + "Z");
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

async function renderFleet(_params, alive) {
  const [devices, rollouts] = await Promise.all([
    api("devices"),
    optionalGet("/rollouts", new URL("rollouts", ROOT)).catch((e) => e),
  ]);
  if (!alive()) return;
  const rows = devices.rows;
  const online = rows.filter((d) => d.online).length;
  $("#devices-summary").textContent = `${online} of ${rows.length} online`;
  table($("#table-devices"),
    ["device", "site", "state", "model", "backend", "fps", "last seen", "errors"],
    rows.map((d) => {
      const state = span(d.online ? "online" : "offline");
      state.prepend(span("", `dot-state${d.online ? " on" : ""}`));
      state.dataset.online = String(d.online);
      const seen = span(ago(d.last_seen));
      seen.title = d.last_seen || "";
      return [d.device, d.site, state, d.model, d.backend, d.fps, seen, d.errors];
    }));
  await renderRollouts(rollouts, alive);
}

async function renderRollouts(answer, alive) {
  const box = $("#rollouts");
  box.textContent = "";
  if (answer === null) {
    box.appendChild(span("Rollouts are not enabled on this fleet.", "muted"));
    box.dataset.available = "no";
    return;
  }
  if (answer instanceof Error) {
    const why = answer.status === 403 ? "this token may not read rollouts" : answer.message;
    box.appendChild(span(`Rollouts unavailable: ${why}.`, "muted"));
    box.dataset.available = "no";
    return;
  }
  box.dataset.available = "yes";
  if (answer.length === 0) {
    box.appendChild(span("No rollouts yet.", "muted"));
    return;
  }
  const details = await Promise.all(answer.map((r) =>
    getJson(new URL(`rollouts/${encodeURIComponent(r.id)}`, ROOT), { optional: true })));
  if (!alive()) return;
  answer.forEach((r, i) => {
    const art = document.createElement("div");
    art.className = "rollout";
    art.appendChild(span(`${r.id}: ${r.bundle}, ${r.state}, stage ${r.stage}, ` +
      `${r.healthy} healthy, ${r.failed} failed of ${r.devices}`));
    const full = details[i];
    if (full && Array.isArray(full.stages)) {
      const stages = document.createElement("div");
      stages.className = "stages";
      full.stages.forEach((pct, k) => { // cumulative percentages of the selected devices
        const inStage = Object.values(full.devices || {}).filter((p) => p.stage === k);
        const healthy = inStage.filter((p) => p.state === "healthy").length;
        const st = span(`${k + 1}: ${Number(pct.toFixed(1))}% · ${healthy}/${inStage.length} healthy`,
          `stage${k === full.stage ? " current" : ""}`);
        stages.appendChild(st);
      });
      art.appendChild(stages);
    }
    box.appendChild(art);
  });
}

// ------------------------------------------------------------------ energy

function savingCell(v) {
  return span(Charts.fmt(v), v < 0 ? "neg" : "");
}

function labelled(value, label) {
  const s = span(Charts.fmt(value));
  const badge = span(label === "measured" ? "measured" : label === "partial"
    ? "partly estimated" : "estimated", `badge${label === "measured" ? " measured" : ""}`);
  s.appendChild(badge);
  return s;
}

// Camera time for people: seconds, minutes or hours.
function duration(hours) {
  if (hours === null || hours === undefined) return "–";
  if (hours < 1 / 60) return `${Math.round(hours * 3600)} s`;
  if (hours < 1) return `${(hours * 60).toFixed(1)} min`;
  return `${Charts.fmt(hours)} h`;
}

// The columns of the ledger tables: [header, cell(row)], only the accounting(s) shown.
function energyColumns(accounting) {
  const both = accounting !== "attributional" && accounting !== "marginal";
  const cols = [
    ["days", (x) => x.days],
    ["camera time", (x) => duration(x.camera_hours)],
    ["edge Wh", (x) => labelled(x.edge.wh, x.edge.label)],
    ["edge g CO2e", (x) => labelled(x.edge.gco2e, x.edge.label)],
  ];
  for (const [acc, short] of [["attributional", "attrib."], ["marginal", "marg."]]) {
    if (!both && acc !== accounting) continue;
    const wh = acc === "attributional" ? "cloud_wh_attributional" : "cloud_wh_marginal";
    const g = acc === "attributional" ? "cloud_gco2e_attributional" : "cloud_gco2e_marginal";
    const edgeG = (x) => (acc === "marginal" ? x.edge.gco2e_marginal ?? x.edge.gco2e : x.edge.gco2e);
    cols.push([`cloud Wh ${short}`, (x) => x.cloud[wh]]);
    cols.push([`cloud g ${short}`, (x) => x.cloud[g]]);
    cols.push([`saved Wh ${short}`, (x) => savingCell(x.cloud[wh] - x.edge.wh)]);
    cols.push([`saved g ${short}`, (x) => savingCell(x.cloud[g] - edgeG(x))]);
  }
  return cols;
}

function energyTable(node, items, key, accounting) {
  const cols = energyColumns(accounting);
  const first = key === "device" ? [["device", (x) => x.device], ["site", (x) => x.site]]
    : [["site", (x) => x.site]];
  const all = [...first, ...cols];
  table(node, all.map((c) => c[0]), items.map((x) => all.map((c) => c[1](x))));
}

// Watts per bucket from /api/v1/power rows: measured and estimated drawn apart.
function powerSeries(rows) {
  const pick = (key) => rows.filter((r) => r[key] > 0).map((r) => [r.bucket, r[key]]);
  return [
    { name: "measured W", cls: "meas", points: pick("measured_w") },
    { name: "estimated W", cls: "est", dashed: true, points: pick("estimated_w") },
  ];
}

const MAX_DEVICE_LINES = 6;

// One colour per device (the ones with the most energy), its measured and estimated watts
// as two series: solid where measured, dashed where estimated.
function deviceSeries(rows) {
  const energy = new Map();
  for (const r of rows) {
    const key = `${r.site}/${r.device}`;
    energy.set(key, (energy.get(key) || 0) + r.measured_wh + r.estimated_wh);
  }
  const devices = [...energy.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k]) => k);
  const shown = devices.slice(0, MAX_DEVICE_LINES);
  const series = [];
  shown.forEach((key, i) => {
    const mine = rows.filter((r) => `${r.site}/${r.device}` === key);
    const name = key.split("/").slice(1).join("/");
    for (const [part, cls, dashed] of [["measured_w", "", false], ["estimated_w", "", true]]) {
      const points = mine.filter((r) => r[part] > 0).map((r) => [r.bucket, r[part]]);
      if (points.length) {
        series.push({ name: `${name} ${part === "measured_w" ? "measured" : "estimated"}`,
          cls: `c${i}${cls}`, dashed, points });
      }
    }
  });
  return { series, hidden: devices.length - shown.length };
}

async function renderEnergy(params, alive) {
  const form = $("#energy-controls");
  const r = rangeOf(params);
  setControls(form, { range: String(r.days), interval: r.interval, end: r.end });
  form.elements.namedItem("interval").querySelector("[value=hour]").disabled = r.days > 7;
  const step = r.interval === "hour" ? 3600e3 : DAY_MS;
  const domain = [r.from, r.to - step];
  const span = { site: params.site, device: params.device, from: iso(r.from), to: iso(r.to) };
  const scope = params.device ? `device ${params.device}` : params.site ? `site ${params.site}`
    : "the whole fleet";
  $("#power-scope").textContent = `${scope}: watts while reporting, measured solid, ` +
    "estimated dashed";

  const pickers = api("devices").then((devices) => {
    if (!alive()) return;
    fillSelect(form.elements.namedItem("site"),
      [...new Set(devices.rows.map((d) => d.site))].sort(), "all sites", params.site);
    const onSite = devices.rows.filter((d) => !params.site || d.site === params.site);
    fillSelect(form.elements.namedItem("device"), onSite.map((d) => d.device), "all devices",
      params.device);
  });

  const ledger = api("energy", span).then((report) => {
    if (!alive()) return;
    const label = report.label || "no power readings";
    $("#energy-caption").textContent = `${scope}, ${iso(r.from).slice(0, 10)} to ${r.end} ` +
      `(UTC). Edge: ${label}. Cloud baseline: streaming the same cameras to the cloud for ` +
      "exactly the camera time the devices counted, in the attributional and the marginal " +
      "accounting. Faded bars, dashed lines and yellow badges are estimated, not measured.";
    const from = report.compared_from ? report.compared_from.replace("T", " ").slice(0, 16) : "–";
    const to = report.compared_to ? report.compared_to.replace("T", " ").slice(0, 16) : "–";
    $("#energy-compared").textContent = `Compared: ${duration(report.camera_hours)} of camera ` +
      `time, ${from} to ${to} (UTC); accounting shown: ${report.accounting || "both"}.`;
    const sites = report.sites;
    const estimated = sites.map((s) => s.edge.label !== "measured");
    const bars = (id, label, edge, attr, marg) => Charts.bars($(id), {
      label,
      groups: sites.map((s) => s.site),
      series: [
        { name: "edge (faded: estimated)", cls: "edge", values: sites.map(edge), hatch: estimated },
        { name: "cloud (attributional)", cls: "attr", values: sites.map(attr) },
        { name: "cloud (marginal)", cls: "marg", values: sites.map(marg) },
      ],
      empty: "no power readings in this range",
    });
    bars("#chart-energy-wh", "Wh per site", (s) => s.edge.wh,
      (s) => s.cloud.cloud_wh_attributional, (s) => s.cloud.cloud_wh_marginal);
    bars("#chart-energy", "g CO2e per site", (s) => s.edge.gco2e,
      (s) => s.cloud.cloud_gco2e_attributional, (s) => s.cloud.cloud_gco2e_marginal);
    energyTable($("#table-energy-sites"), sites, "site", report.accounting);
    energyTable($("#table-energy-devices"), report.devices, "device", report.accounting);
    $("#energy-note").textContent = report.note || "";
  });

  const group = params.device ? "device" : (params.site ? "site" : "fleet");
  const total = api("power", { ...span, interval: r.interval, group }).then((answer) => {
    if (!alive()) return;
    const series = powerSeries(answer.rows);
    Charts.line($("#chart-power"), { label: "watts", series, domain, step,
      empty: "no power readings in this range" });
    seriesTable($("#table-power"), series);
  });

  const perDevice = api("power", { ...span, interval: r.interval, group: "device" })
    .then((answer) => {
      if (!alive()) return;
      const { series, hidden } = deviceSeries(answer.rows);
      Charts.line($("#chart-power-devices"), { label: "watts per device", series, domain, step,
        empty: "no power readings in this range" });
      if (hidden > 0) {
        const note = document.createElement("p");
        note.className = "muted";
        note.textContent = `${hidden} more device(s) not drawn: pick a site or a device.`;
        $("#chart-power-devices").appendChild(note);
      }
      seriesTable($("#table-power-devices"), series);
    });

  await Promise.all([pickers, ledger, total, perDevice]);
}

// ------------------------------------------------------------------ routing

// Every card of a view says "loading" until its own data arrive (and are drawn).
function showLoading(view) {
  for (const chart of view.querySelectorAll(".chart")) Charts.loading(chart);
  for (const node of view.querySelectorAll("table")) {
    node.textContent = "";
    node.createCaption().textContent = "loading…";
  }
  const rollouts = view.querySelector("#rollouts");
  if (rollouts) rollouts.textContent = "loading…";
  const events = view.querySelector("#events-box");
  if (events && events.dataset.available !== "no") events.hidden = false;
}

const VIEWS = { traffic: renderTraffic, fleet: renderFleet, energy: renderEnergy };
let generation = 0;

async function render() {
  const { view, params } = readHash();
  const mine = ++generation;
  const alive = () => mine === generation;
  for (const v of Object.keys(VIEWS)) $(`#view-${v}`).hidden = v !== view;
  document.querySelectorAll("nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.view === view));
  document.body.dataset.view = view;
  document.body.dataset.state = "loading";
  $("#banner").hidden = true;
  showLoading($(`#view-${view}`));
  try {
    await VIEWS[view](params, alive);
    if (alive()) document.body.dataset.state = "ready";
  } catch (err) {
    if (!alive()) return;
    $("#banner").textContent = `The fleet API answered: ${err.message}`;
    $("#banner").hidden = false;
    document.body.dataset.state = "error";
    for (const chart of document.querySelectorAll(`#view-${view} .chart[data-state=loading]`)) {
      Charts.loading(chart, "not loaded: see the message above");
    }
  }
}

function onControls(view, form) {
  form.addEventListener("change", () => {
    const params = Object.fromEntries(new FormData(form));
    const was = readHash().params;
    if (view === "energy") {
      if (Number(params.range) > 7) params.interval = "day";
      if ((params.site || "") !== (was.site || "")) params.device = "";
    }
    if (view === "traffic") {
      if (Number(params.range) > 7) params.interval = "day";
      if ((params.site || "") !== (was.site || "")) { params.device = ""; params.line = ""; }
      else if ((params.device || "") !== (was.device || "")) params.line = "";
    }
    writeHash(view, params);
  });
}

onControls("traffic", $("#traffic-controls"));
onControls("energy", $("#energy-controls"));
$("#forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenButton();
  render();
});
window.addEventListener("hashchange", render);
showTokenButton();
render();
