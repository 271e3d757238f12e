"""A report as one self-contained HTML file: inline CSS and SVG charts, no
scripts, no network, so it opens anywhere and can be mailed or archived."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from synth.v1 import evaluation_pb2

from services.common import labels

# Presentation by label; the labels themselves come from the proto descriptors.
_VERDICT_STYLE = {
    "pass": ("pass", "#1a7f37"),
    "warn": ("warning", "#9a6700"),
    "fail": ("fail", "#cf222e"),
    "not_applicable": ("n/a", "#6e7781"),
}


def _verdict(number: int) -> tuple[str, str]:
    return _VERDICT_STYLE.get(labels.label(evaluation_pb2.Verdict, number), ("?", "#6e7781"))


_SERIES = (("real", "#1f6feb"), ("synthetic", "#fb8500"), ("baseline", "#8c959f"))
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
.badge{color:#fff;border-radius:1em;padding:0 .6em;font-size:.8em;font-weight:600}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eaeef2;padding:.3rem;text-align:left;
vertical-align:top}th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eaeef2;padding:.5rem}
.legend span{margin-right:1em}.muted{color:#59636e}
"""


def _metric_table(report: evaluation_pb2.Report, category: str) -> list[str]:
    """One category's metrics as a table (nothing when it has none)."""
    metrics = [m for m in report.metrics if labels.label(evaluation_pb2.MetricCategory, m.category) == category]
    if not metrics:
        return []
    parts = [
        f"<h2>{category.capitalize()}</h2><table><tr><th>metric</th><th class='num'>synthetic</th>",
        "<th class='num'>naive baseline</th><th class='num'>real holdout</th>",
        "<th class='num'>threshold</th><th>verdict</th><th>what it means</th></tr>",
    ]
    for m in metrics:
        name, badge_color = _verdict(m.verdict)
        baseline = f"{m.baseline_value:.3f}" if m.HasField("baseline_value") else "–"
        holdout = f"{m.holdout_value:.3f}" if m.HasField("holdout_value") else "–"
        sign = "≥" if m.higher_is_better else "≤"
        parts.append(
            f"<tr><td>{_e(m.name)}</td><td class='num'>{m.value:.3f}</td><td class='num'>{baseline}</td>"
            f"<td class='num'>{holdout}</td><td class='num'>{sign} {m.threshold:.3f}</td>"
            f"<td>{_badge(name, badge_color)}</td><td>{_e(m.explanation)}</td></tr>"
        )
    parts.append("</table>")
    return parts


def render_report(report: evaluation_pb2.Report) -> str:
    verdict, color = _verdict(report.verdict)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Synthetic data report {_e(report.id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Report {_e(report.id)} {_badge(verdict, color)}</h1>",
        f"<p>{_e(report.summary)}</p>",
        *(
            [
                f"<p>Engine: {_e(report.engine)}"
                + (f" (chosen automatically: {_e(report.engine_reason)})" if report.engine_reason else "")
                + "</p>"
            ]
            if report.engine
            else []
        ),
        *(
            ["<h2>What to do next</h2><ul>", *(f"<li>{_e(s)}</li>" for s in report.next_steps), "</ul>"]
            if report.next_steps
            else []
        ),
        "<p class='muted'>"
        f"Real dataset {_e(report.dataset_id)}; synthetic rows from "
        f"{_e(report.model_id or report.synthetic_dataset_id)}; {report.training_rows} training rows, "
        f"{report.holdout_rows} held-out rows, {report.synthetic_rows} synthetic rows; "
        f"target {_e(report.target_column or 'none')}; seed {report.seed}; computed in {report.seconds:.1f} s.</p>",
        "<p>Scores from 0 (useless) to 1 (as good as real data): "
        f"utility <b>{report.utility_score:.2f}</b>, fidelity <b>{report.fidelity_score:.2f}</b>, "
        f"privacy <b>{report.privacy_score:.2f}</b>.</p>",
    ]
    for category in labels.labels(evaluation_pb2.MetricCategory):
        parts.extend(_metric_table(report, category))
    if report.histograms:
        parts.append("<h2>Distributions, real vs synthetic</h2>")
        parts.append(
            "<p class='legend'>"
            + "".join(f"<span style='color:{c}'>■ {n}</span>" for n, c in _SERIES)
            + "</p><div class='charts'>"
        )
        for hist in report.histograms:
            parts.append(_histogram(hist))
        parts.append("</div>")
    corr = report.correlations
    if corr.real.columns:
        parts.append("<h2>Correlations</h2><div class='charts'>")
        for title, matrix in (("real", corr.real), ("synthetic", corr.synthetic), ("difference", corr.difference)):
            parts.append(_heatmap(title, matrix))
        parts.append("</div>")
    if report.distances:
        parts.append("<h2>Privacy distances</h2><div class='charts'>")
        for dist in report.distances:
            parts.append(
                _bars(
                    f"{dist.name}: synthetic→train vs holdout→train",
                    [f"{x:.2g}" for x in dist.bin_edges[:-1]] or [str(i) for i in range(len(dist.synthetic_to_train))],
                    [
                        ("synthetic→train", "#fb8500", dist.synthetic_to_train),
                        ("holdout→train", "#1f6feb", dist.holdout_to_train),
                    ],
                )
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _histogram(hist: evaluation_pb2.Histogram) -> str:
    labels = list(hist.labels) if not hist.bin_edges else [f"{x:.3g}" for x in hist.bin_edges[:-1]]
    series = [(n, c, getattr(hist, n)) for n, c in _SERIES if len(getattr(hist, n))]
    return _bars(hist.column, labels, series)


def _bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]]) -> str:
    width, height, pad = 320, 150, 20
    bins = max((len(values) for _, _, values in series), default=0)
    top = max((v for _, _, values in series for v in values if math.isfinite(v)), default=0.0) or 1.0
    slot = (width - pad) / max(bins, 1)
    bar = slot / max(len(series), 1) * 0.9
    shapes = []
    for index, (_, color, values) in enumerate(series):
        for b, value in enumerate(values):
            h = (value / top) * (height - pad) if math.isfinite(value) else 0
            x = pad + b * slot + index * bar
            label = labels[b] if b < len(labels) else ""
            shapes.append(
                f"<rect x='{x:.1f}' y='{height - pad - h:.1f}' width='{bar:.1f}' height='{h:.1f}' fill='{color}'>"
                f"<title>{_e(label)}: {value:.3f}</title></rect>"
            )
    return (
        f"<div class='chart'><div>{_e(title)}</div><svg width='{width}' height='{height}' role='img' "
        f"aria-label='{_e(title)}'><line x1='{pad}' y1='{height - pad}' x2='{width}' y2='{height - pad}' "
        f"stroke='#8c959f'/>{''.join(shapes)}</svg></div>"
    )


def _heatmap(title: str, matrix: evaluation_pb2.Matrix) -> str:
    n = len(matrix.columns)
    cell = max(8, min(24, 300 // max(n, 1)))
    size = n * cell
    rects = []
    for i in range(n):
        for j in range(n):
            value = matrix.values[i * n + j] if i * n + j < len(matrix.values) else 0.0
            v = max(-1.0, min(1.0, value)) if math.isfinite(value) else 0.0
            color = f"rgba(31,111,235,{v:.2f})" if v >= 0 else f"rgba(207,34,46,{-v:.2f})"
            rects.append(
                f"<rect x='{j * cell}' y='{i * cell}' width='{cell}' height='{cell}' fill='{color}'>"
                f"<title>{_e(matrix.columns[i])} × {_e(matrix.columns[j])}: {value:.2f}</title></rect>"
            )
    return (
        f"<div class='chart'><div>{_e(title)}</div><svg width='{size}' height='{size}' role='img' "
        f"aria-label='correlations {_e(title)}'>{''.join(rects)}</svg></div>"
    )


def _badge(text: str, color: str) -> str:
    return f"<span class='badge' style='background:{color}'>{_e(text)}</span>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
