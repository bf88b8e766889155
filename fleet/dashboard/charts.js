// Small SVG charts for the fleet dashboard: time lines and grouped bars. No dependencies.
// Each chart writes the numbers it draws into data-series on its container (JSON), so what
// the picture shows can be read back and checked against the API, and its state into
// data-state: "loading" (loading() was called, its data are on their way), then "ready".
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  let W = 720; // set to the container's width by frame(), so text keeps its size
  const H = 240;
  const M = { top: 12, right: 16, bottom: 28, left: 56 };

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Round numbers for an axis from 0 to at least max: about five steps of 1, 2 or 5 x 10^n.
  function niceTicks(max) {
    if (!(max > 0)) return [0, 1];
    const raw = max / 5;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const ticks = [];
    for (let v = 0; v < max + step; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString("en");
    return v.toFixed(a >= 10 ? 1 : 2);
  }

  function timeLabel(ms, spanMs) {
    const d = new Date(ms);
    const day = d.toISOString().slice(5, 10);
    if (spanMs <= 2 * 86400e3) return d.toISOString().slice(11, 16);
    return day;
  }

  function emptyNote(svg, text) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" },
      text));
  }

  // A card whose data are on their way: a note in place of the chart.
  function loading(container, text) {
    container.textContent = "";
    container.dataset.state = "loading";
    delete container.dataset.series;
    const note = document.createElement("p");
    note.className = "loading";
    note.textContent = text || "loading…";
    container.appendChild(note);
  }

  function frame(container, label) {
    container.textContent = "";
    container.dataset.state = "ready";
    W = Math.max(320, Math.min(1600, Math.round(container.clientWidth || 720)));
    const svg = el("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart-svg",
    });
    container.appendChild(svg);
    return svg;
  }

  function yAxis(svg, max) {
    const ticks = niceTicks(max);
    const top = ticks[ticks.length - 1];
    const y = (v) => M.top + (H - M.top - M.bottom) * (1 - v / top);
    for (const t of ticks) {
      svg.appendChild(el("line", { x1: M.left, x2: W - M.right, y1: y(t), y2: y(t),
        class: "grid" }));
      svg.appendChild(el("text", { x: M.left - 6, y: y(t) + 4, "text-anchor": "end",
        class: "tick" }, fmt(t)));
    }
    return y;
  }

  function legend(container, series) {
    const box = document.createElement("div");
    box.className = "legend";
    for (const s of series) {
      const item = document.createElement("span");
      item.className = `key ${s.cls || ""}${s.dashed ? " dashed" : ""}`;
      item.textContent = s.name;
      box.appendChild(item);
    }
    container.appendChild(box);
  }

  // Runs of points without a missing bucket between them: [[i0, i1, ...], ...]. A gap is
  // more than one step (the interval asked for) from one point to the next; without a
  // step, the smallest distance between two points is taken for it.
  function runs(times, step) {
    let unit = step;
    if (!(unit > 0)) {
      unit = Infinity;
      for (let i = 1; i < times.length; i++) unit = Math.min(unit, times[i] - times[i - 1]);
    }
    const out = [];
    times.forEach((t, i) => {
      if (i === 0 || t - times[i - 1] > unit * 1.5) out.push([]);
      out[out.length - 1].push(i);
    });
    return out;
  }

  // series: [{name, cls, dashed, stem, shiftMs, points: [[isoBucket, value], ...]}]
  // shiftMs moves a series along x (the previous week is drawn over the current one);
  // domain, [fromMs, toMs], fixes the x axis to the range asked for; step (ms), the bucket
  // interval: a missing bucket is a gap, the line breaks there (no line across hours
  // without data), and a point alone between gaps is drawn as a dot.
  function line(container, { label, series, empty, domain, step }) {
    const svg = frame(container, label);
    container.dataset.series = JSON.stringify(
      series.map((s) => ({ name: s.name, points: s.points })));
    const all = series.flatMap((s) => s.points.map(([b, v]) =>
      [Date.parse(b) + (s.shiftMs || 0), v]));
    if (all.length === 0) {
      emptyNote(svg, empty || "no data in this range");
      legend(container, series);
      return;
    }
    const xs = all.map((p) => p[0]);
    const x0 = domain ? domain[0] : Math.min(...xs);
    const x1 = domain ? domain[1] : Math.max(...xs);
    const span = Math.max(x1 - x0, 1);
    const x = (t) => M.left + (W - M.left - M.right) * ((t - x0) / span);
    const y = yAxis(svg, Math.max(...all.map((p) => p[1])));
    // ticks on whole UTC hours or days, at most eight of them
    const steps = [1, 3, 6, 12, 24, 48, 168, 336, 672, 1344, 2016].map((h) => h * 3600e3);
    const tick = steps.find((st) => span / st <= 8) || span;
    for (let t = Math.ceil(x0 / tick) * tick; t <= x1; t += tick) {
      svg.appendChild(el("text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "tick" },
        timeLabel(t, span)));
    }
    for (const [si, s] of series.entries()) {
      if (s.points.length === 0) continue;
      const off = s.stem ? si * 2.5 : 0; // stems of several series side by side
      const times = s.points.map(([b]) => Date.parse(b) + (s.shiftMs || 0));
      const pts = s.points.map(([, v], i) => [x(times[i]) + off, y(v)]);
      const segments = s.stem ? pts.map((_p, i) => [i]) : runs(times, step);
      // stems (a vertical stroke per bucket) suit sparse counts; a line is one subpath
      // (M, then L) per run of buckets with no bucket missing
      const d = s.stem
        ? pts.map(([px, py]) => `M${px.toFixed(1)},${y(0).toFixed(1)}V${py.toFixed(1)}`)
        : segments.flatMap((run) => run.map((i, k) =>
          `${k ? "L" : "M"}${pts[i][0].toFixed(1)},${pts[i][1].toFixed(1)}`));
      svg.appendChild(el("path", { d: d.join(""),
        class: `series ${s.cls || ""}${s.dashed ? " dashed" : ""}` }));
      if (!s.stem) {
        const few = s.points.length <= 60;
        const lone = new Set(segments.filter((run) => run.length === 1).map((run) => run[0]));
        s.points.forEach(([b, v], i) => {
          if (!few && !lone.has(i)) return;
          const dot = el("circle", { cx: pts[i][0], cy: pts[i][1], r: 2.5,
            class: `dot ${s.cls || ""}` });
          dot.appendChild(el("title", {}, `${s.name} ${b.slice(0, 16).replace("T", " ")}: ${fmt(v)}`));
          svg.appendChild(dot);
        });
      }
    }
    legend(container, series);
  }

  // groups: ["site-a", ...]; series: [{name, cls, values: [v per group], hatch: [bool]}]
  function bars(container, { label, groups, series, empty }) {
    const svg = frame(container, label);
    container.dataset.series = JSON.stringify(
      series.map((s) => ({ name: s.name, groups, values: s.values })));
    if (groups.length === 0) {
      emptyNote(svg, empty || "no data in this range");
      legend(container, series);
      return;
    }
    const max = Math.max(0, ...series.flatMap((s) => s.values));
    const y = yAxis(svg, max);
    const bandW = (W - M.left - M.right) / groups.length;
    const barW = Math.max(2, (bandW * 0.8) / series.length);
    groups.forEach((g, gi) => {
      const bx = M.left + gi * bandW + bandW * 0.1;
      series.forEach((s, si) => {
        const v = s.values[gi];
        const hatched = s.hatch && s.hatch[gi];
        const rect = el("rect", { x: bx + si * barW, y: y(v), width: barW - 1,
          height: Math.max(0, y(0) - y(v)), class: `bar ${s.cls || ""}${hatched ? " est" : ""}` });
        rect.appendChild(el("title", {}, `${g} ${s.name}: ${fmt(v)}${hatched ? " (estimated)" : ""}`));
        svg.appendChild(rect);
      });
      const fits = Math.max(4, Math.floor(bandW / 6.5)); // characters of 11px text
      const name = g.length > fits ? g.slice(0, fits - 1) + "…" : g;
      svg.appendChild(el("text", { x: bx + bandW * 0.4, y: H - 8, "text-anchor": "middle",
        class: "tick" }, name));
    });
    legend(container, series);
  }

  return { line, bars, loading, fmt, niceTicks };
})();
