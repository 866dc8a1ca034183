"""Did rebuy's decisions cause orders? Treatment against randomized control, with intervals.

Pure core (`attribute`, `compare`, `uplift_tables`) and a thin writer (`write_report`, `log_report`).
Each decision is followed for `attribution_days` after it was made; only **matured** decisions (window
closed by `as_of`) count, so recent decisions do not look like non-conversions. Randomisation makes
the comparisons causal: per campaign, treatment vs that campaign's control group; per segment, the
same within segment; the global holdout against everything treated. Per offer the comparison is the
offer's recipients against the control of the campaigns it was drawn in — the policy chose those
recipients, so that row is descriptive, not an unbiased effect (the JSON says so).

Conversion: difference of proportions, Wald 95% CI, pooled two-proportion z-test; revenue per customer:
Welch's t (unequal variances) with its CI -- all from statsmodels. No conversion on either side yet:
no interval, a note instead. Incremental revenue = difference × treated customers;
offer cost = fixed cost per send + redemption share of the attributed revenue of converters (+ the
shipping for free shipping); ROI = (incremental revenue × margin − offer cost) / offer cost.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from rebuy.config import Config
from rebuy.errors import RebuyError

EXPERIMENT = "rebuy-uplift"
INCENTIVES = ("coupon_10pct", "free_shipping", "points_x2", "wake_up_gift")


def attribute(
    decisions: pd.DataFrame, orders: pd.DataFrame, window_days: int, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Per decision: orders, revenue (net of returns) and first-order amount in (decided_at, +window],
    and whether the window has closed by `as_of`. Orders after `as_of` are never used."""
    d = decisions[
        ["decision_id", "customer_id", "decided_at", "campaign", "offer", "group", "segment"]
    ].copy()
    d["decided_at"] = pd.to_datetime(d["decided_at"], utc=True)
    d["window_end"] = d["decided_at"] + pd.Timedelta(days=window_days)
    d["matured"] = d["window_end"] <= as_of
    o = orders.loc[orders["ordered_at"] <= as_of, ["customer_id", "ordered_at", "amount", "returned_amount"]]
    j = d[["decision_id", "customer_id", "decided_at", "window_end"]].merge(o, on="customer_id", how="inner")
    j = j.loc[(j["ordered_at"] > j["decided_at"]) & (j["ordered_at"] <= j["window_end"])]
    j = j.assign(net=j["amount"] - j["returned_amount"]).sort_values(["decision_id", "ordered_at"])
    g = j.groupby("decision_id")
    agg = pd.DataFrame({"orders": g.size(), "revenue": g["net"].sum(), "first_amount": g["net"].first()})
    d = d.join(agg, on="decision_id")
    d[["orders", "revenue", "first_amount"]] = d[["orders", "revenue", "first_amount"]].fillna(0.0)
    d["orders"] = d["orders"].astype(int)
    d["converted"] = d["orders"] > 0
    return d.drop(columns=["window_end"])


def offer_cost(rows: pd.DataFrame, cfg: Config) -> pd.Series:
    """Cost per decision: fixed cost per send, redemption share of the first attributed order, and
    the shop's shipping for a redeemed free-shipping offer (only treated senders cost anything)."""
    cat = cfg.offers.catalogue
    sent = (rows["group"] == "treatment") & (rows["offer"] != "none")
    fixed = rows["offer"].map(lambda o: cat[o].cost if o in cat else 0.0)
    share = rows["offer"].map(lambda o: cat[o].redemption_share if o in cat else 0.0)
    redeemed = rows["converted"].astype(float)
    shipping = np.where(rows["offer"] == "free_shipping", cfg.offers.shipping_cost, 0.0)
    cost = fixed + redeemed * (share * rows["first_amount"] + shipping)
    return cost.where(sent, 0.0)


def compare(treat: pd.DataFrame, ctrl: pd.DataFrame, margin: float, cost: float) -> dict[str, Any]:
    """Treatment − control on conversion and revenue per customer, with 95% CIs and p-values (statsmodels).

    No conversion on either side yet: the counts and a note, no interval or p-value (a [0, 0] interval
    with p = 1 would read as a measured zero effect; there is nothing measured yet).
    """
    nt, nc = len(treat), len(ctrl)
    out: dict[str, Any] = {"customers_treatment": nt, "customers_control": nc}
    if nt == 0 or nc == 0:
        return {**out, "note": "no comparison: one side is empty"}
    kt, kc = int(treat["converted"].sum()), int(ctrl["converted"].sum())
    rt, rc = treat["revenue"].to_numpy(float), ctrl["revenue"].to_numpy(float)
    incremental = float(rt.mean() - rc.mean()) * nt
    roi = (incremental * margin - cost) / cost if cost > 0 else None
    money = {
        "incremental_revenue": incremental,
        "offer_cost": float(cost),
        "roi": None if roi is None else float(roi),
    }
    if kt == 0 and kc == 0:
        return {
            **out,
            "conversion_treatment": 0.0,
            "conversion_control": 0.0,
            **money,
            "note": "no conversions yet: no interval",
        }
    lo, hi = confint_proportions_2indep(kt, nt, kc, nc, method="wald", compare="diff")
    # pooled two-proportion z-test; every customer converted on both sides: no spread, no difference
    p_conv = proportions_ztest([kt, kc], [nt, nc])[1] if kt + kc < nt + nc else 1.0
    rdiff = float(rt.mean() - rc.mean())
    means = CompareMeans(DescrStatsW(rt), DescrStatsW(rc))
    if nt > 1 and nc > 1 and (rt.var() > 0 or rc.var() > 0):
        rlo, rhi = means.tconfint_diff(alpha=0.05, usevar="unequal")  # Welch
        p_rev = means.ttest_ind(usevar="unequal")[1]
    else:  # no spread to estimate an interval from (fewer than two rows, or constant revenue on both sides)
        rlo, rhi, p_rev = rdiff, rdiff, 1.0
    return {
        **out,
        "conversion_treatment": kt / nt,
        "conversion_control": kc / nc,
        "conversion_diff": kt / nt - kc / nc,
        "conversion_ci": [float(lo), float(hi)],
        "conversion_p_value": float(p_conv),
        "revenue_per_customer_treatment": float(rt.mean()),
        "revenue_per_customer_control": float(rc.mean()),
        "revenue_diff": rdiff,
        "revenue_ci": [float(rlo), float(rhi)],
        "revenue_p_value": float(p_rev),
        **money,
    }


def kpis(rows: pd.DataFrame, window_days: int, margin: float) -> dict[str, Any]:
    """The seeds' KPIs over decisions: repurchase rate, redemption rate, AOV and a CLV proxy
    (attributed orders per customer annualised × AOV × margin: yearly margin per customer)."""
    n = len(rows)
    orders = int(rows["orders"].sum())
    revenue = float(rows["revenue"].sum())
    incent = rows.loc[(rows["group"] == "treatment") & rows["offer"].isin(INCENTIVES)]
    aov = revenue / orders if orders else None
    return {
        "customers": n,
        "repurchase_rate": float(rows["converted"].mean()) if n else None,
        "redemption_rate": float(incent["converted"].mean()) if len(incent) else None,
        "average_order_value": aov,
        "clv_proxy": (orders / n) * (365 / window_days) * aov * margin if n and aov else None,
    }


def uplift_tables(
    cfg: Config, decisions: pd.DataFrame, orders: pd.DataFrame, as_of: pd.Timestamp
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (pure)."""
    window = cfg.offers.attribution_days
    margin = cfg.offers.margin
    # forgotten customers' decisions can no longer be joined to their orders: leave them out entirely
    forgotten = decisions["pseudonymised"].astype(bool) if "pseudonymised" in decisions else None
    if forgotten is not None:
        decisions = decisions.loc[~forgotten]
    a = attribute(decisions, orders, window, as_of)
    m = a.loc[a["matured"]].copy()
    m["cost"] = offer_cost(m, cfg)
    t, c, h = (m.loc[m["group"] == g] for g in ("treatment", "control", "holdout"))

    def row(key: str, value: str, treat: pd.DataFrame, ctrl: pd.DataFrame, **extra: Any) -> dict[str, Any]:
        return {key: value, **extra, **compare(treat, ctrl, margin, float(treat["cost"].sum()))}

    campaigns = [
        row("campaign", k, t.loc[t["campaign"] == k], c.loc[c["campaign"] == k])
        for k in sorted(m["campaign"].unique())
    ]
    segments = [
        row("segment", s, t.loc[t["segment"] == s], c.loc[c["segment"] == s])
        for s in sorted(m["segment"].dropna().unique())
    ]
    offers = []
    for o in sorted(t["offer"].unique()):
        got = t.loc[t["offer"] == o]
        offers.append(
            row(
                "offer",
                o,
                got,
                c.loc[c["campaign"].isin(set(got["campaign"]))],
                comparison="descriptive: recipients chosen by the policy vs the campaigns' control",
            )
        )
    return {
        "as_of": as_of.isoformat(),
        "attribution_days": window,
        "margin": margin,
        "decisions": len(a),
        "forgotten_excluded": int(forgotten.sum()) if forgotten is not None else 0,
        "matured": len(m),
        "not_matured": int((~a["matured"]).sum()),
        "holdout": compare(t, h, margin, float(t["cost"].sum())),
        "campaigns": campaigns,
        "offers": offers,
        "segments": segments,
        "kpis": {
            g: kpis(part, window, margin) for g, part in (("treatment", t), ("control", c), ("holdout", h))
        },
    }


# --- thin writers --------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rows = [r for r in report["campaigns"] if "conversion_diff" in r]
    if report["holdout"].get("conversion_diff") is not None:
        rows = [{**report["holdout"], "campaign": "ALL vs holdout"}, *rows]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
        y = np.arange(len(rows))
        d = np.array([r["conversion_diff"] for r in rows])
        lo = d - np.array([r["conversion_ci"][0] for r in rows])
        hi = np.array([r["conversion_ci"][1] for r in rows]) - d
        ax.errorbar(d, y, xerr=[lo, hi], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, [r["campaign"] for r in rows])
        ax.set_xlabel("conversion uplift (treatment − control), 95% CI")
        out.append(("Conversion uplift", _png(fig)))
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
        ax.barh(y, [r["incremental_revenue"] for r in rows])
        ax.set_yticks(y, [r["campaign"] for r in rows])
        ax.set_xlabel("incremental revenue in the attribution window")
        out.append(("Incremental revenue", _png(fig)))
        plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]], key: str) -> str:
    if not rows:
        return "<p>none</p>"
    cols = [
        key,
        "customers_treatment",
        "customers_control",
        "conversion_treatment",
        "conversion_control",
        "conversion_diff",
        "conversion_ci",
        "conversion_p_value",
        "revenue_diff",
        "revenue_ci",
        "incremental_revenue",
        "offer_cost",
        "roi",
        "note",
    ]
    df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows])
    return df.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="–", border=0)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: tables and PNG plots embedded as data URIs."""
    import html as _html

    plots = "".join(
        f"<h3>{_html.escape(t)}</h3><img src='data:image/png;base64,{b}'/>" for t, b in _plots(report)
    )
    kp = pd.DataFrame(report["kpis"]).T.to_html(float_format=lambda x: f"{x:.4g}", na_rep="–", border=0)
    hold = _table([{**report["holdout"], "group": "treatment vs global holdout"}], "group")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>rebuy uplift {report["as_of"]}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}}</style></head><body>
<h1>Uplift of rebuy's decisions</h1>
<p>as of {report["as_of"]}; attribution window {report["attribution_days"]} days; {report["matured"]} matured
decisions ({report["not_matured"]} still inside their window, not counted); margin {report["margin"]}.</p>
<h2>Global holdout</h2>{hold}<h2>Per campaign</h2>{_table(report["campaigns"], "campaign")}
<h2>Per segment</h2>{_table(report["segments"], "segment")}
<h2>Per offer (descriptive)</h2>{_table(report["offers"], "offer")}
<h2>KPIs</h2>{kp}{plots}</body></html>"""


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """uplift.json + uplift.html into `out_dir` (written to temp names, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "uplift.json", "html": out_dir / "uplift.html"}
    for kind, text in (("json", json.dumps(report, indent=2, default=str)), ("html", render_html(report))):
        tmp = paths[kind].with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[kind])
    return paths


def log_report(cfg: Config, report: dict[str, Any], paths: dict[str, Path]) -> str:
    """One MLflow run in experiment `rebuy-uplift`: headline metrics + the HTML and JSON."""
    import mlflow

    from training.registry import experiment_id

    mlflow.set_tracking_uri(cfg.mlflow_uri)
    exp_id = experiment_id(cfg, EXPERIMENT)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"uplift-{report['as_of'][:10]}") as run:
        h = report["holdout"]
        metrics = {"matured_decisions": report["matured"]}
        for k in (
            "conversion_diff",
            "conversion_p_value",
            "revenue_diff",
            "incremental_revenue",
            "offer_cost",
            "roi",
        ):
            if h.get(k) is not None:
                metrics[f"holdout.{k}"] = float(h[k])
        for r in report["campaigns"]:
            if r.get("conversion_diff") is not None:
                metrics[f"campaign.{r['campaign']}.conversion_diff"] = float(r["conversion_diff"])
        mlflow.log_metrics(metrics)
        mlflow.log_params({"attribution_days": report["attribution_days"], "as_of": report["as_of"]})
        for p in paths.values():
            mlflow.log_artifact(str(p), artifact_path="uplift")
        return str(run.info.run_id)


def report_uplift(cfg: Config, as_of: pd.Timestamp, *, mlflow_log: bool = True) -> dict[str, Any]:
    """`rebuy report uplift`: read the decision log and orders, write HTML + JSON, log to MLflow."""
    from pipelines import decision_log as dl
    from rebuy.ingest import read_canonical

    url = cfg.decision_log_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise RebuyError(f"no decision log at {url}; run `rebuy run` first")
    engine = dl.engine_for(url, create=False)
    try:
        with engine.connect() as conn:
            decisions = dl.read_decisions(conn)
    finally:
        engine.dispose()
    orders = read_canonical(cfg.paths.data_dir)["orders"]
    report = uplift_tables(cfg, decisions, orders, as_of)
    paths = write_report(report, cfg.paths.reports_dir / "uplift")
    run_id = log_report(cfg, report, paths) if mlflow_log else None
    return {"report": report, "paths": {k: str(v) for k, v in paths.items()}, "mlflow_run_id": run_id}
