// Small SVG charts for the fleet dashboard: time lines and grouped bars. No dependencies.
// Each chart writes the numbers it draws into data-series on its container (JSON), so what
// the picture shows can be read back and checked against the API.
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

  function frame(container, label) {
    container.textContent = "";
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

  // series: [{name, cls, dashed, stem, shiftMs, points: [[isoBucket, value], ...]}]
  // shiftMs moves a series along x (the previous week is drawn over the current one);
  // domain, [fromMs, toMs], fixes the x axis to the range asked for.
  function line(container, { label, series, empty, domain }) {
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
    const step = steps.find((st) => span / st <= 8) || span;
    for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) {
      svg.appendChild(el("text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "tick" },
        timeLabel(t, span)));
    }
    for (const [si, s] of series.entries()) {
      if (s.points.length === 0) continue;
      const off = s.stem ? si * 2.5 : 0; // stems of several series side by side
      const pts = s.points.map(([b, v]) => [x(Date.parse(b) + (s.shiftMs || 0)) + off, y(v)]);
      // stems (a vertical stroke per bucket) suit sparse counts: no line through gaps
      const d = s.stem
        ? pts.map(([px, py]) => `M${px.toFixed(1)},${y(0).toFixed(1)}V${py.toFixed(1)}`)
        : pts.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`);
      svg.appendChild(el("path", { d: d.join(""),
        class: `series ${s.cls || ""}${s.dashed ? " dashed" : ""}` }));
      if (s.points.length <= 60 && !s.stem) {
        s.points.forEach(([b, v], i) => {
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

  return { line, bars, fmt, niceTicks };
})();
