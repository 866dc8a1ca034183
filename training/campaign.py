"""What would rebuy have done with a past campaign, and would it have beaten what the shop did?

An imported campaign (`rebuy.campaign_import.CampaignData`) becomes a `training.offer.LoggedSet` and runs
through the same learners, policy and off-policy evaluation as rebuy's own decision log
(`training.offer.learn_and_evaluate`), once per outcome, on a held-out split. Costs: the catalogue's fixed
cost per send of arms named like offers (zero for others) is subtracted from non-binary outcomes only — a
currency amount cannot be taken off a 0/1 conversion. The report (JSON + HTML with plots) states each
arm's effect with 95% and simultaneous intervals, uplift at k% and Qini per outcome, the value of the
personalised policy next to every constant one, and a plain recommendation from the primary outcome.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rebuy.config import Config, OffersConfig
from rebuy.errors import RebuyError
from training.offer import KS, LoggedSet, OutcomeEvaluation, arm_costs, learn_and_evaluate, split_logged
from training.ope import ESTIMATORS
from training.uplift import LEARNERS


@dataclass
class CampaignReport:
    """The learned campaign: one `OutcomeEvaluation` per outcome and the recommendation of the primary one."""

    name: str
    control: str
    arms: list[str]
    n_rows: int
    n_train: int
    n_test: int
    randomisation_assumed: bool
    primary: str
    outcomes: dict[str, OutcomeEvaluation] = field(default_factory=dict)

    @property
    def recommendation(self) -> dict[str, Any]:
        return {"outcome": self.primary, **self.outcomes[self.primary].recommendation}

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.name,
            "control": self.control,
            "arms": self.arms,
            "rows": self.n_rows,
            "train_rows": self.n_train,
            "test_rows": self.n_test,
            "randomisation_assumed": self.randomisation_assumed,
            "propensities": "arm shares (randomisation assumed)" if self.randomisation_assumed else "logged",
            "primary_outcome": self.primary,
            "recommendation": self.recommendation,
            "outcomes": {k: v.to_json() for k, v in self.outcomes.items()},
        }


def logged_from_campaign(data: Any) -> LoggedSet:
    """CampaignData (frame + column roles) → LoggedSet; categorical attributes stay text."""
    f = data.frame
    return LoggedSet(
        X=f[list(data.attributes)].reset_index(drop=True),
        arm=f[data.arm].astype(object).to_numpy(),
        propensity=f[data.propensity].to_numpy(dtype=float),
        outcomes=f[list(data.outcomes)].astype(float).reset_index(drop=True),
        categorical=tuple(data.categorical),
    )


def _is_binary(s: pd.Series) -> bool:
    return set(np.unique(s.to_numpy(dtype=float)).tolist()) <= {0.0, 1.0}


# the estimators in the report's policy table, in reading order (simple to doubly robust)
METHOD_ORDER: tuple[str, ...] = ESTIMATORS


def campaign_costs(
    arms: Sequence[str], offers: OffersConfig | None, named: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Cost per send of each arm: `[import.campaign] arm_costs` by the export's arm name, else the
    catalogue's cost for an arm named like an offer, else 0. A name in `arm_costs` that is no arm of
    the campaign is an error (a typo would silently cost nothing)."""
    named = dict(named or {})
    unknown = sorted(set(named) - set(arms))
    if unknown:
        raise RebuyError(
            f"[import.campaign] arm_costs names {unknown}, which the campaign does not have; its arms "
            f"are {sorted(arms)} (names as in the export, case and spaces included)"
        )
    return {**arm_costs(arms, offers), **{a: float(c) for a, c in named.items()}}


def learn_campaign(
    data: Any,
    offers: OffersConfig | None,
    *,
    named_costs: Mapping[str, float] | None = None,
    primary: str | None = None,
    test_share: float = 0.3,
    seed: int = 0,
    use_costs: bool = True,
    learners: Sequence[str] = LEARNERS,
    ks: Sequence[float] = KS,
    min_rows: int = 30,
    progress: Any = None,
) -> CampaignReport:
    """Pure: learn every outcome of an imported campaign and value the policies on held-out rows.

    `primary` is the outcome the recommendation follows (default: the first non-binary outcome — money
    is what a policy is for — else the first outcome). `progress(outcome)` is called before each outcome.
    """
    logged = logged_from_campaign(data)
    outcomes = list(data.outcomes)
    if primary is None:
        money = [o for o in outcomes if not _is_binary(logged.outcomes[o])]
        primary = money[0] if money else outcomes[0]
    if primary not in outcomes:
        raise RebuyError(f"outcome {primary!r} is not in the campaign; its outcomes are {outcomes}")
    train, test = split_logged(logged, test_share, seed)
    arms = sorted(set(logged.arm.tolist()))
    costs_all = campaign_costs(arms, offers, named_costs) if use_costs else arm_costs(arms, None)
    report = CampaignReport(
        getattr(data, "name", "") or "campaign",
        data.control,
        [a for a in arms if a != data.control],
        len(logged),
        len(train),
        len(test),
        bool(data.randomisation_assumed),
        primary,
    )
    for o in outcomes:
        if progress is not None:
            progress(o)
        costs = {a: 0.0 for a in arms} if _is_binary(logged.outcomes[o]) else costs_all
        report.outcomes[o] = learn_and_evaluate(
            train, test, data.control, o, costs=costs, learners=learners, seed=seed, ks=ks, min_rows=min_rows
        )
    return report


# --- report files ------------------------------------------------------------------------------------------


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


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")


def policy_table(policies: pd.DataFrame) -> pd.DataFrame:
    """One row per policy, columns `<method>_value/_low/_high` with the methods in METHOD_ORDER."""
    pol = policies.pivot_table(index="policy", columns="method", values=["value", "low", "high"])
    present = set(pol.columns.get_level_values(1))
    methods = [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))
    cols = [(s, m) for m in methods for s in ("value", "low", "high")]
    pol = pol[cols]
    pol.columns = pd.Index([f"{m}_{s}" for s, m in cols])
    return pol.reset_index()


def render_html(report: CampaignReport) -> str:
    """One self-contained HTML page (plots inlined) a data scientist can open and forward."""
    rec = report.recommendation
    verdict = {
        "personalise": "Personalise: send each customer the arm the model picks.",
        "best_arm": f"Send everyone {rec.get('arm')}.",
        "nothing": "Send nothing.",
    }[rec["action"]]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rebuy campaign report</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table.t{border-collapse:collapse;"
        "font-size:13px}table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>",
        f"<h1>Campaign {html.escape(report.name)}</h1>",
        f"<p>{report.n_rows} customers, arms {html.escape(', '.join(report.arms))} against control "
        f"<b>{html.escape(report.control)}</b>; learned on {report.n_train}, evaluated on {report.n_test} held-out.",
        " Propensities: "
        + ("arm shares — <b>randomisation is assumed</b>." if report.randomisation_assumed else "logged.")
        + "</p>",
        f"<h2>Recommendation ({html.escape(report.primary)})</h2><p><b>{html.escape(verdict)}</b> "
        f"{html.escape(rec['reason'])}</p>",
    ]
    for name, ev in report.outcomes.items():
        imgs = plot_outcome(ev)
        pol = policy_table(ev.policies)
        parts += [
            f"<h2>Outcome: {html.escape(name)}</h2>",
            f"<p>Costs subtracted: {html.escape(json.dumps(ev.costs))}. Learner kept: "
            f"<b>{ev.selection.chosen if ev.selection else '-'}</b> (better held-out Qini).</p>",
            "<h3>Effect of each arm against control</h3>",
            _table(ev.effects),
            f"<figure>{imgs['effects']}</figure>",
            "<h3>Uplift model</h3>",
            _table(ev.selection.scores) if ev.selection else "",
            _table(ev.uplift_at_k),
            f"<figure>{imgs['qini']}{imgs['uplift']}</figure>",
            "<h3>Policy values (held-out, per customer)</h3>",
            _table(pol),
            f"<p>Personalised minus best constant (paired DR): {ev.advantage.value:.4g} "
            f"[{ev.advantage.low:.4g}, {ev.advantage.high:.4g}]. {html.escape(ev.recommendation['reason'])}</p>",
            f"<figure>{imgs['policies']}</figure>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: CampaignReport, out_dir: Path) -> dict[str, Path]:
    """`campaign_report.json` and `.html` in `out_dir`, each written to a temp file and renamed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "campaign_report.json", "html": out_dir / "campaign_report.html"}
    contents = {
        "json": json.dumps(report.to_json(), indent=2, default=_json_default),
        "html": render_html(report),
    }
    for k, path in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(contents[k], encoding="utf-8")
        tmp.replace(path)
    return files


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def log_report(cfg: Config, report: CampaignReport, files: Mapping[str, Path]) -> str:
    """MLflow adapter: params, headline metrics and both files under experiment `rebuy-campaigns`."""
    import mlflow

    cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    from training.registry import experiment_id

    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-campaigns"))
    with mlflow.start_run(run_name=f"campaign-{report.name}") as run:
        mlflow.log_params(
            {
                "campaign": report.name,
                "control": report.control,
                "arms": ",".join(report.arms),
                "primary_outcome": report.primary,
                "rows": report.n_rows,
                "recommendation": report.recommendation["action"],
                "recommended_arm": report.recommendation.get("arm") or "",
            }
        )
        metrics: dict[str, float] = {}
        for o, ev in report.outcomes.items():
            metrics.update({f"qini.{o}.{a}": float(q) for a, q in ev.qini.items() if np.isfinite(q)})
            dr = ev.policies[ev.policies["method"] == "dr"]
            metrics.update(
                {
                    f"dr.{o}.{p.replace(':', '.')}": float(v)
                    for p, v in zip(dr["policy"], dr["value"], strict=True)
                }
            )
        mlflow.log_metrics(metrics)  # one batch: a database commit per metric was a second of the report
        for p in files.values():
            mlflow.log_artifact(str(p))
        return str(run.info.run_id)


def report_campaign(
    cfg: Config,
    name: str,
    *,
    outcome: str | None = None,
    test_share: float = 0.3,
    seed: int = 0,
    use_costs: bool = True,
    out_dir: Path | None = None,
    log_mlflow: bool = True,
) -> tuple[CampaignReport, dict[str, Path]]:
    """`rebuy report campaign`: read the imported campaign, learn, write HTML + JSON, log to MLflow."""
    from rich.progress import Progress

    from rebuy.campaign_import import read_campaign

    data = read_campaign(name, cfg)
    min_rows = min(cfg.import_.campaign.min_rows_per_arm, 30)
    with Progress(transient=True) as bar:
        task = bar.add_task("learning outcomes", total=len(data.outcomes))

        def step(o: str) -> None:
            bar.update(task, description=f"learning {o}", completed=data.outcomes.index(o))

        report = learn_campaign(
            data,
            cfg.offers,
            named_costs=cfg.import_.campaign.arm_costs,
            primary=outcome,
            test_share=test_share,
            seed=seed,
            use_costs=use_costs,
            min_rows=min_rows,
            progress=step,
        )
        bar.update(task, completed=len(data.outcomes))
    files = write_report(report, out_dir or cfg.paths.reports_dir / "campaigns" / (data.name or "campaign"))
    if log_mlflow:
        log_report(cfg, report, files)
    return report, files


# --- simulated campaigns: the truth to judge a report against ----------------------------------------------


def campaign_truth(
    sim: Any, export: pd.DataFrame, offers: Sequence[str], horizon_days: int, paths: int | None = None
) -> pd.DataFrame:
    """The simulator's truth for an exported campaign's customers (index customer_id), per arm, on the
    channel each customer would be reached on by the campaign's own rule (the offer's configured channel
    when consented, else the first consented of email, sms, push), so truth and export describe the same
    sends — including for the customers who happened to land in the control arm.

    Assumes every non-control arm has the same configured channel (true for the default catalogue's email
    offers); the simulator's `truth` takes one channel per call.
    """
    at = pd.Timestamp(export["sent_at"].iloc[0]).floor("D")
    cat = sim.config.offers.catalogue
    wants = {cat[o].channel for o in offers if o != "none" and o in cat} or {"email"}
    if len(wants) > 1:
        raise RebuyError(f"campaign_truth needs arms on one configured channel, got {sorted(wants)}")
    want = wants.pop()
    consent = {ch: export[f"consent_{ch}"].astype(bool).to_numpy() for ch in ("email", "sms", "push")}
    first = np.select(
        [consent["email"], consent["sms"], consent["push"]], ["email", "sms", "push"], default=want
    )
    channel = np.where(consent.get(want, np.zeros(len(export), bool)), want, first)
    parts = []
    for ch in sorted(set(channel.tolist())):
        ids = export["customer_id"].to_numpy()[channel == ch]
        parts.append(
            sim.truth(
                list(ids),
                at,
                horizon_days=horizon_days,
                offers=tuple(offers),
                spend_days=None,
                channel=str(ch),
                paths=paths,
            )
        )
    return pd.concat(parts).loc[export["customer_id"]]
