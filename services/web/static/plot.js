// Plots as inline SVG, no library: step lines (a count holds until the next point) and
// dots, over a time axis. Used by dashboard.js.
"use strict";

const Plot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 800, H = 230, M = { left: 44, right: 14, top: 30, bottom: 24 };

  function el(tag, attrs, parent, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function ticks(max, count, whole) {
    // A step of 1, 2 or 5 × 10^n giving about `count` ticks (at least 1 for counts), from 0
    // to the first tick at or above max.
    const raw = max / count, p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    let step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
    if (whole) step = Math.max(1, Math.round(step));
    const out = [0];
    while (out[out.length - 1] < max - 1e-9) {
      out.push(Math.round(out.length * step * 1000) / 1000);
    }
    return out;
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  }

  // draw(svg, {t0, t1, lines: [{label, color, points: [[t, v]], dash}],
  //            dots: [{label, color, points: [[t, v]]}], empty})
  function draw(svg, spec) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const lines = spec.lines || [], dots = spec.dots || [];
    const values = [...lines, ...dots].flatMap((s) => s.points.map((p) => p[1]));
    if (!values.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, spec.empty || "no data yet");
      return;
    }
    const t0 = spec.t0, t1 = Math.max(spec.t1, spec.t0 + 1);
    const yTicks = ticks(Math.max(1, ...values), 4, !dots.length);  // lines are counts
    const yMax = yTicks[yTicks.length - 1] || 1;
    const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
    const y = (v) => H - M.bottom - (v / yMax) * (H - M.top - M.bottom);

    for (const v of yTicks) {
      el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }, svg);
      el("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, svg, String(v));
    }
    el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }, svg);
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      el("text", { x: x(t), y: H - 6, "text-anchor": anchor }, svg, clock(t));
    }
    for (const line of lines) {
      if (!line.points.length) continue;
      let d = `M${x(line.points[0][0]).toFixed(1)},${y(line.points[0][1]).toFixed(1)}`;
      for (const [t, v] of line.points.slice(1)) {
        d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
      }
      el("path", { d, fill: "none", stroke: line.color, "stroke-width": 2,
                   "stroke-dasharray": line.dash || "none", "data-series": line.label }, svg);
    }
    for (const set of dots) {
      for (const [t, v] of set.points) {
        el("circle", { cx: x(t), cy: y(v), r: 3.5, fill: set.color, "fill-opacity": 0.75 }, svg);
      }
    }
    const legend = el("g", { class: "legend" }, svg);
    let lx = M.left;
    for (const s of [...lines, ...dots]) {
      el("rect", { x: lx, y: 8, width: 12, height: 12, fill: s.color }, legend);
      const label = el("text", { x: lx + 16, y: 18 }, legend, s.label);
      lx += 28 + label.getComputedTextLength();
    }
  }

  return { draw };
})();
