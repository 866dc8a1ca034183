"""Next-best-offer benchmark: the true value of rebuy's offer policy against the oracle, and the DR error.

For each seed a shop is simulated (fixed size), a randomized campaign over every offer is run at the end of
its history, and rebuy learns from 70% of it (the same `training.offer.learn_and_evaluate` path as
`rebuy train offer`, features = what the shop knows at send time from the export). On the other 30% the
simulator's truth gives each customer's expected incremental margin of every offer, so each policy's true
value (mean incremental margin per customer against sending nothing, exploration off) is exact up to the
oracle's Monte Carlo:

- rebuy: greedy on the estimated incremental margin;  - oracle: the best offer per customer by true effect
  (chosen on one Monte Carlo estimate of the truth and valued on an independent one, so the oracle's own
  noise does not inflate it);
- best constant offer (or nothing, if no offer pays on average);  - random: an offer drawn uniformly.

Bars (issue 6): rebuy ≥ 85% of the oracle and above the best constant; the DR estimate of rebuy's value
(paired DR, rebuy − nobody, on the held-out campaign rows) within 10% of the truth on average (MAE).

Customers are restricted to those who consent to email and push, so every offer reaches them on its own
configured channel — the channel the truth API values it on.

Run on demand: `.venv/bin/python benchmarks/offer.py [--seeds 5] [--customers 30000] [--effect-scale 1]`.
Writes benchmarks/results/offer.json and offer.md (suffix `-scaleX` when --effect-scale is not 1).
Measured on a 2-core machine shared with other work.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this folder holds scripts named like packages (features.py, train.py)

from rebuy.config import Config  # noqa: E402
from rebuy.simulator import SIM_OFFERS, ShopSimulator, SimConfig  # noqa: E402
from rebuy.timeutil import telemetry_off  # noqa: E402
from training.offer import LoggedSet, learn_and_evaluate, personalised_actions, realised_margin  # noqa: E402

ATTRS = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "discount_share",
    "last_category",
    "age",
    "region",
    "consent_sms",
]
CATEGORICAL = ("last_category", "region")


def one_seed(seed: int, customers: int, months: int, scale: float, paths: int) -> dict[str, float]:
    cfg = Config()
    t0 = time.perf_counter()
    sim = ShopSimulator(
        SimConfig(customers=customers, months=months, seed=seed, events=False, effect_scale=scale)
    )
    sim.run_history()
    _, export = sim.randomized_campaign(sim.now, offers=SIM_OFFERS, seed=seed)
    export = export[export["consent_email"].astype(bool) & export["consent_push"].astype(bool)]
    export = export.reset_index(drop=True)
    t_sim = time.perf_counter() - t0
    margin = realised_margin(export["spend"], export["orders"], export["arm"], cfg.offers)
    X = export[ATTRS].copy()
    X["consent_sms"] = X["consent_sms"].astype(float)
    data = LoggedSet(
        X,
        export["arm"].to_numpy(object),
        export["propensity"].to_numpy(float),
        pd.DataFrame({"margin": margin}),
        CATEGORICAL,
    )
    rng = np.random.default_rng(seed)
    test = rng.random(len(export)) < 0.3
    train_set, test_set = data.take(np.flatnonzero(~test)), data.take(np.flatnonzero(test))
    t1 = time.perf_counter()
    ev = learn_and_evaluate(train_set, test_set, "none", "margin", seed=seed)
    t_learn = time.perf_counter() - t1
    model = ev.selection.model  # type: ignore[union-attr]
    acts = personalised_actions(model, model.encoder.transform(test_set.X), "margin")

    t2 = time.perf_counter()
    ids = export.loc[test, "customer_id"].tolist()
    cols = [f"expected_margin__{o}" for o in SIM_OFFERS]

    def truth(order: list[str]) -> np.ndarray:
        t = sim.truth(
            order,
            sim.now,
            horizon_days=cfg.offers.attribution_days,
            offers=SIM_OFFERS,
            spend_days=None,
            paths=paths,
        )
        return t.loc[ids, cols].to_numpy()

    # two independent Monte Carlo estimates (the oracle's random streams depend on the order of the ids)
    m_a, m_b = truth(ids), truth(ids[::-1])
    t_truth = time.perf_counter() - t2
    m = (m_a + m_b) / 2
    rows_ = np.arange(len(m))
    col = {o: i for i, o in enumerate(SIM_OFFERS)}
    v_rebuy = float(m[rows_, [col[a] for a in acts]].mean())
    # cross-fitted oracle: pick the best offer on one estimate, value it on the other, so Monte Carlo noise
    # cannot inflate the oracle (the max of noisy values is biased upwards)
    v_oracle = float((m_b[rows_, m_a.argmax(axis=1)].mean() + m_a[rows_, m_b.argmax(axis=1)].mean()) / 2)
    const = m.mean(axis=0)
    best_const = SIM_OFFERS[int(np.argmax(const))]
    v_random = float(m[:, 1:].mean())
    dr_rebuy = ev.policies.set_index(["policy", "method"]).loc[("personalised", "dr"), "value"]
    dr_none = ev.policies.set_index(["policy", "method"]).loc[("everyone:none", "dr"), "value"]
    dr_incr = float(dr_rebuy - dr_none)
    return {
        "seed": seed,
        "campaign_rows": len(export),
        "test_rows": int(test.sum()),
        "learner": ev.selection.chosen,  # type: ignore[union-attr]
        "v_rebuy": v_rebuy,
        "v_oracle": v_oracle,
        "v_best_constant": float(const.max()),
        "best_constant": best_const,
        "v_random": v_random,
        "share_rebuy": v_rebuy / v_oracle,
        "share_best_constant": float(const.max()) / v_oracle,
        "share_random": v_random / v_oracle,
        "dr_estimate": dr_incr,
        "dr_rel_error": abs(dr_incr - v_rebuy) / abs(v_rebuy) if v_rebuy else float("nan"),
        "rebuy_actions": pd.Series(acts).value_counts().to_dict(),
        "seconds_simulate": t_sim,
        "seconds_learn": t_learn,
        "seconds_truth": t_truth,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--customers", type=int, default=30_000)
    ap.add_argument("--months", type=int, default=9)
    ap.add_argument("--effect-scale", type=float, default=1.0)
    ap.add_argument("--paths", type=int, default=64, help="Monte Carlo paths of the truth per customer")
    args = ap.parse_args()
    telemetry_off()
    rows = []
    with Progress() as bar:
        task = bar.add_task("seeds", total=args.seeds)
        for seed in range(1, args.seeds + 1):
            rows.append(one_seed(seed, args.customers, args.months, args.effect_scale, args.paths))
            bar.advance(task)
    df = pd.DataFrame(rows)
    summary = {
        "share_rebuy_mean": float(df["share_rebuy"].mean()),
        "share_best_constant_mean": float(df["share_best_constant"].mean()),
        "share_random_mean": float(df["share_random"].mean()),
        "rebuy_beats_best_constant": int((df["v_rebuy"] > df["v_best_constant"]).sum()),
        "dr_mae_rel": float(df["dr_rel_error"].mean()),
        "bar_share_085": bool(df["share_rebuy"].mean() >= 0.85),
        "bar_above_best_constant": bool(df["v_rebuy"].mean() > df["v_best_constant"].mean()),
        "bar_dr_mae_010": bool(df["dr_rel_error"].mean() <= 0.10),
    }
    meta = {
        "machine": f"{platform.machine()}, 2 cores shared with other work",
        "python": platform.python_version(),
        **vars(args),
    }
    suffix = "" if args.effect_scale == 1.0 else f"-scale{args.effect_scale:g}"
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"offer{suffix}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "seeds": rows}, indent=2, default=str), encoding="utf-8"
    )
    lines = [
        f"# Offer policy vs oracle ({args.seeds} seeds, {args.customers} customers, {args.months} months, "
        f"effect scale {args.effect_scale:g}; {meta['machine']})",
        "",
        "| policy | true incremental margin / customer (mean) | share of oracle (mean) |",
        "|---|---|---|",
    ]
    for name, v, s in (
        ("oracle", "v_oracle", None),
        ("rebuy (greedy, no exploration)", "v_rebuy", "share_rebuy"),
        ("best constant offer", "v_best_constant", "share_best_constant"),
        ("random offer", "v_random", "share_random"),
    ):
        lines.append(
            f"| {name} | {df[v].mean():.4f} | {df[s].mean():.1%} |"
            if s
            else f"| {name} | {df[v].mean():.4f} | 100% |"
        )
    lines += [
        "",
        f"- rebuy above the best constant in {summary['rebuy_beats_best_constant']}/{args.seeds} seeds",
        f"- DR estimate of rebuy's incremental value: mean relative error {summary['dr_mae_rel']:.1%} "
        "(bar ≤ 10%)",
        f"- bars: ≥85% of oracle {'met' if summary['bar_share_085'] else 'NOT met'}; above best constant "
        f"{'met' if summary['bar_above_best_constant'] else 'NOT met'}; DR MAE ≤ 10% "
        f"{'met' if summary['bar_dr_mae_010'] else 'NOT met'}",
        "",
        "| seed | rows | learner | rebuy | oracle | best const | random | DR estimate | DR rel. error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['campaign_rows']} | {r['learner']} | {r['v_rebuy']:.4f} | {r['v_oracle']:.4f} "
            f"| {r['v_best_constant']:.4f} ({r['best_constant']}) | {r['v_random']:.4f} | "
            f"{r['dr_estimate']:.4f} | {r['dr_rel_error']:.1%} |"
        )
    (out / f"offer{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
