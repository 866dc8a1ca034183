"""Policy-evaluation plots as small inline SVG: effects with intervals, Qini and uplift curves.

Shared by the campaign report (`training.campaign`) and the offer model's MLflow artifacts (`training.offer`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.offer_eval import OutcomeEvaluation

# Plots are small inline SVG written here rather than matplotlib PNGs: importing and rasterising
# matplotlib was half the CPU time of a 60k-row report, and SVG stays sharp when zoomed or printed.
_W, _LEFT, _RIGHT, _TOP, _BOTTOM = 620, 150, 20, 12, 42
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k)."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo] if np.isfinite(lo) else [0.0]
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))
    first = np.ceil(lo / step) * step
    return [float(round(v / step) * step) for v in np.arange(first, hi + step * 1e-9, step)]


def _extent(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _axis_x(lo: float, hi: float, x: Any, height: float, label: str, top: float = _TOP) -> list[str]:
    """Bottom axis: grid lines, tick labels and the axis title."""
    out = []
    for t in _ticks(lo, hi):
        out.append(
            f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top}' y2='{height - _BOTTOM}' stroke='#eee'/>"
            f"<text x='{x(t):.1f}' y='{height - _BOTTOM + 14}' text-anchor='middle'>{t:.4g}</text>"
        )
    out.append(
        f"<text x='{(_LEFT + _W - _RIGHT) / 2:.0f}' y='{height - 8}' text-anchor='middle'>{html.escape(label)}</text>"
    )
    return out


def _svg(height: float, body: list[str]) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{height:.0f}' font-family='sans-serif' "
        f"font-size='11'>{''.join(body)}</svg>"
    )


def svg_intervals(rows: pd.DataFrame, xlabel: str, bands: Sequence[tuple[str, str, str]]) -> str:
    """One row per label: a dot at `value` and one horizontal bar per (low, high, legend) in `bands`,
    the first drawn widest; a vertical line marks zero; the legend is a line above the rows."""
    n = len(rows)
    top = _TOP + 16  # legend line
    height = top + _BOTTOM + 26 * max(n, 1) + 16
    cols = [c for lo, hi, _ in bands for c in (lo, hi)] + ["value"]
    lo, hi = _extent([*rows[cols].to_numpy(dtype=float).ravel().tolist(), 0.0])

    def x(v: float) -> float:
        return _LEFT + (v - lo) / (hi - lo) * (_W - _LEFT - _RIGHT)

    body = _axis_x(lo, hi, x, height, xlabel, top)
    body.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='{top}' y2='{height - _BOTTOM}' stroke='#888'/>")
    for i, d in enumerate(rows[["label", *cols]].to_dict("records")):
        y = top + 16 + 26 * i
        body.append(
            f"<text x='{_LEFT - 6}' y='{y + 4}' text-anchor='end'>{html.escape(str(d['label']))}</text>"
        )
        for j, (lo_c, hi_c, _) in enumerate(bands):
            if np.isfinite(d[lo_c]) and np.isfinite(d[hi_c]):
                body.append(
                    f"<line x1='{x(d[lo_c]):.1f}' x2='{x(d[hi_c]):.1f}' y1='{y}' y2='{y}' "
                    f"stroke='{_COLOURS[j]}' stroke-width='{max(1.5, 6 - 3 * j)}' stroke-opacity='0.6'/>"
                )
        if np.isfinite(d["value"]):
            body.append(f"<circle cx='{x(d['value']):.1f}' cy='{y}' r='3.5' fill='#000'/>")
    for j, (_, _, legend) in enumerate(bands):
        body.append(
            f"<text x='{_LEFT + 140 * j}' y='{_TOP + 4}' fill='{_COLOURS[j]}'>{html.escape(legend)}</text>"
        )
    return _svg(height, body)


def svg_lines(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    xlabel: str,
    ylabel: str,
    chords: bool = False,
    points: int = 200,
) -> str:
    """Line chart of (x, y) series, each thinned to about `points` points (NaNs skipped); `chords`
    adds each series' straight line from (0, 0) to its last point (random targeting on a Qini plot)."""
    height = 320
    thin: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (xs, ys) in series.items():
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        keep = np.unique(np.linspace(0, max(len(xs) - 1, 0), min(points, len(xs))).round().astype(int))
        xs, ys = xs[keep], ys[keep]
        ok = np.isfinite(xs) & np.isfinite(ys)
        thin[name] = (xs[ok], ys[ok])
    all_y = [v for _, ys in thin.values() for v in ys.tolist()] + ([0.0] if chords else [])
    ylo, yhi = _extent(all_y)
    xlo, xhi = 0.0, 1.0

    def x(v: float) -> float:
        return _LEFT + (v - xlo) / (xhi - xlo) * (_W - _LEFT - _RIGHT)

    def y(v: float) -> float:
        return height - _BOTTOM - (v - ylo) / (yhi - ylo) * (height - _TOP - _BOTTOM)

    body = _axis_x(xlo, xhi, x, height, xlabel)
    for t in _ticks(ylo, yhi):
        body.append(
            f"<line x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#eee'/>"
            f"<text x='{_LEFT - 6}' y='{y(t) + 4:.1f}' text-anchor='end'>{t:.4g}</text>"
        )
    body.append(
        f"<text transform='translate(14,{(height - _BOTTOM + _TOP) / 2:.0f}) rotate(-90)' text-anchor='middle'>"
        f"{html.escape(ylabel)}</text>"
    )
    for j, (name, (xs, ys)) in enumerate(thin.items()):
        colour = _COLOURS[j % len(_COLOURS)]
        if len(xs):
            pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys, strict=True))
            body.append(f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
            if chords:
                body.append(
                    f"<line x1='{x(0):.1f}' y1='{y(0):.1f}' x2='{x(xs[-1]):.1f}' y2='{y(ys[-1]):.1f}' "
                    f"stroke='{colour}' stroke-dasharray='3 3' stroke-opacity='0.7'/>"
                )
        body.append(
            f"<text x='{_LEFT + 8}' y='{_TOP + 12 + 13 * j}' fill='{colour}'>{html.escape(name)}</text>"
        )
    return _svg(height, body)


def plot_outcome(ev: OutcomeEvaluation) -> dict[str, str]:
    """Inline SVGs: arm effects with CIs, Qini curves, cumulative uplift, policy values with CIs."""
    e = ev.effects.assign(label=ev.effects["arm"], value=ev.effects["effect"])
    d = ev.policies[ev.policies["method"] == "dr"].assign(label=lambda f: f["policy"])
    curves = ev.curves
    return {
        "effects": svg_intervals(
            e,
            f"effect on {ev.outcome} vs {ev.control}",
            [("sim_low", "sim_high", "simultaneous 95%"), ("low", "high", "95%")],
        ),
        "qini": svg_lines(
            {a: (c["fraction"].to_numpy(), c["qini"].to_numpy()) for a, c in curves.items()},
            "share targeted (by predicted uplift)",
            "incremental outcome (Qini)",
            chords=True,
        ),
        "uplift": svg_lines(
            {a: (c["fraction"].to_numpy(), c["uplift"].to_numpy()) for a, c in curves.items()},
            "share targeted (by predicted uplift)",
            "cumulative uplift",
        ),
        "policies": svg_intervals(
            d, f"DR value per customer ({ev.outcome}, net of cost)", [("low", "high", "95%")]
        ),
    }
