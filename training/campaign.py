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
from rebuy.files import write_text
from training.offer_data import KS, LoggedSet, arm_costs, split_logged
from training.offer_eval import OutcomeEvaluation, learn_and_evaluate
from training.offer_plots import plot_outcome
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
        write_text(path, contents[k])
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
