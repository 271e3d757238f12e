/* Small SVG charts, no dependencies: line, grouped bars, heatmap.
   Each draws into a container element, replacing what was there, and gives the
   SVG role="img" with a text summary for screen readers. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const t = el("text", Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = content;
    return t;
  }

  function svgRoot(container, width, height, label) {
    container.textContent = "";
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
    el("title", {}, svg).textContent = label;
    container.appendChild(svg);
    return svg;
  }

  function fmt(v) {
    if (!isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.01 || a >= 1e5)) return v.toExponential(1);
    return Number(v.toFixed(a < 1 ? 3 : a < 100 ? 2 : 0)).toString();
  }

  function ticks(min, max, count) {
    if (min === max) { min -= 1; max += 1; }
    const step0 = (max - min) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step / 1e6; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function legend(container, items) {
    const div = document.createElement("div");
    div.className = "legend";
    for (const item of items) {
      const span = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = `swatch series-${item.cls}`;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(item.name));
      div.appendChild(span);
    }
    container.appendChild(div);
  }

  /* series: [{name, cls, points: [[x, y], ...]}] */
  function line(container, opts) {
    const W = opts.width || 640, H = opts.height || 260, m = { l: 56, r: 12, t: 12, b: 36 };
    const all = opts.series.flatMap((s) => s.points);
    const last = opts.series.map((s) => s.points.length ? `${s.name} ${fmt(s.points[s.points.length - 1][1])}` : "");
    const svg = svgRoot(container, W, H, `${opts.title}: ${all.length ? "latest " + last.join(", ") : "no data yet"}`);
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const x0 = opts.xMin ?? Math.min(...xs, 0), x1 = Math.max(opts.xMax ?? 1, ...xs);
    let y0 = Math.min(...ys, 0), y1 = Math.max(...ys, 0.1);
    if (!all.length) { y0 = 0; y1 = 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const X = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
    const Y = (v) => H - m.b - ((v - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
    const axis = el("g", { class: "axis" }, svg);
    for (const t of ticks(y0, y1, 5)) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }, axis);
      text(axis, m.l - 6, Y(t) + 4, fmt(t), { "text-anchor": "end" });
    }
    for (const t of ticks(x0, x1, 8).filter((v) => Number.isInteger(v) || !opts.integerX)) {
      text(axis, X(t), H - m.b + 16, fmt(t), { "text-anchor": "middle" });
    }
    el("line", { x1: m.l, x2: W - m.r, y1: Y(0), y2: Y(0) }, axis);
    text(svg, W / 2, H - 4, opts.xLabel || "", { "text-anchor": "middle" });
    for (const s of opts.series) {
      if (!s.points.length) continue;
      el("polyline", { class: `series-${s.cls}`, points: s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" ") }, svg);
    }
    legend(container, opts.series);
  }

  /* labels: [..]; series: [{name, cls, values: [..]}] — grouped bars */
  function bars(container, opts) {
    const W = opts.width || 560, H = opts.height || 240, m = { l: 48, r: 8, t: 10, b: 56 };
    const n = opts.labels.length, k = opts.series.length;
    const max = Math.max(1e-12, ...opts.series.flatMap((s) => s.values));
    const svg = svgRoot(container, W, H, `${opts.title}: ${n} bins, ${opts.series.map((s) => s.name).join(" vs ")}`);
    const band = (W - m.l - m.r) / Math.max(n, 1), bw = Math.max(1, (band * 0.8) / k);
    const Y = (v) => H - m.b - (v / max) * (H - m.t - m.b);
    const axis = el("g", { class: "axis" }, svg);
    for (const t of ticks(0, max, 4)) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }, axis);
      text(axis, m.l - 6, Y(t) + 4, fmt(t), { "text-anchor": "end" });
    }
    opts.series.forEach((s, j) => {
      s.values.forEach((v, i) => {
        const r = el("rect", {
          class: `series-${s.cls}`, x: m.l + i * band + band * 0.1 + j * bw, y: Y(v), width: bw, height: Math.max(0, Y(0) - Y(v)),
        }, svg);
        el("title", {}, r).textContent = `${s.name}, ${opts.labels[i]}: ${fmt(v)}`;
      });
    });
    const every = Math.ceil(n / 12);
    opts.labels.forEach((lab, i) => {
      if (i % every) return;
      const short = lab.length > 12 ? lab.slice(0, 11) + "…" : lab;
      text(svg, m.l + i * band + band / 2, H - m.b + 12, short, {
        "text-anchor": "end", transform: `rotate(-35 ${m.l + i * band + band / 2} ${H - m.b + 12})`,
      });
    });
    legend(container, opts.series);
  }

  /* columns: [..]; values: row-major n*n in [-1, 1] (or [0, max] with opts.min = 0) */
  function heatmap(container, opts) {
    const n = opts.columns.length, cell = Math.max(10, Math.min(28, Math.floor(300 / Math.max(n, 1))));
    const m = { l: 90, t: 8, r: 8, b: 90 }, W = m.l + n * cell + m.r, H = m.t + n * cell + m.b;
    const min = opts.min ?? -1, max = opts.max ?? 1;
    const svg = svgRoot(container, W, H, `${opts.title}: ${n} by ${n} matrix`);
    const color = (v) => {
      const t = Math.max(-1, Math.min(1, (2 * (v - min)) / (max - min || 1) - 1));
      // blue (negative) - white - red (positive)
      const a = Math.abs(t), c = Math.round(255 - a * 170);
      return t >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`;
    };
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const v = opts.values[i * n + j];
        const r = el("rect", { x: m.l + j * cell, y: m.t + i * cell, width: cell - 1, height: cell - 1, fill: isFinite(v) ? color(v) : "#ddd" }, svg);
        el("title", {}, r).textContent = `${opts.columns[i]} × ${opts.columns[j]}: ${fmt(v)}`;
      }
      const name = opts.columns[i].length > 12 ? opts.columns[i].slice(0, 11) + "…" : opts.columns[i];
      text(svg, m.l - 4, m.t + i * cell + cell / 2 + 4, name, { "text-anchor": "end" });
      const x = m.l + i * cell + cell / 2, y = m.t + n * cell + 6;
      text(svg, x, y, name, { "text-anchor": "end", transform: `rotate(-60 ${x} ${y})` });
    }
  }

  /* a histogram from bin edges: series of counts (normalised to shares) */
  function histogram(container, opts) {
    const labels = [];
    for (let i = 0; i + 1 < opts.edges.length; i++) labels.push(`${fmt(opts.edges[i])}–${fmt(opts.edges[i + 1])}`);
    const series = opts.series.map((s) => {
      const total = s.values.reduce((a, b) => a + b, 0) || 1;
      return Object.assign({}, s, { values: s.values.map((v) => v / total) });
    });
    bars(container, Object.assign({}, opts, { labels, series }));
  }

  return { line, bars, heatmap, histogram, fmt };
})();
