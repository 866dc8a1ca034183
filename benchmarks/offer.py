"""Next-best-offer benchmark: the true value of rebuy's offer policy against the oracle, and the DR error.

Fixed history size. For each seed a shop is simulated (100k customers, 12 months, no events) and, as a shop
that explores would have, `--campaigns` randomized campaigns over every offer two weeks apart before its end
(uniform arms; ≈ 100k decisions in all) form the history rebuy learns from. A further randomized campaign at
the end is the held-out set: rebuy's doubly robust estimate is computed on all of it, and the simulator's
truth (expected incremental margin of every offer per customer, exploration off) on a random
`--truth-rows` of it gives each policy's true value (mean incremental margin per customer vs sending nothing):

- rebuy: `training.offer.learn_offer_model`, the path of `rebuy train offer` (conversion uplift model kept
  by Qini, margin from conversion × the catalogue's economics, shrink chosen on validation rows), greedy;
- rebuy at each fixed shrink, and the session-1 approach (T-learner on realised margins), for comparison;
- observable ceiling: the truth itself regressed on the same features (5-fold cross-fitted), greedy — what
  any learner on these features could reach with unlimited data;
- oracle: the best offer per customer by true effect (chosen on one Monte Carlo estimate of the truth and
  valued on an independent one, so the oracle's own noise does not inflate it);
- best constant offer (or nothing), random offer.

Bars (issue 6): rebuy ≥ 85% of the oracle and above the best constant; the DR estimate of rebuy's value
(paired DR, rebuy − nobody, on the held-out campaign) within 10% of the truth on average (MAE).

Customers are restricted to those who consent to email and push, so every offer reaches them on its own
configured channel — the channel the truth API values it on, with the costs it charges.

Run on demand: `.venv/bin/python benchmarks/offer.py [--seeds 5] [--effect-scale 1] [--tune]`.
Writes benchmarks/results/offer.json and offer.md (suffix `-scaleX` / `-tuned` when not the defaults).
Measured on a 2-core machine shared with other work: wall and CPU seconds are both recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
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
from training.offer import (  # noqa: E402
    LoggedSet,
    learn_offer_model,
    optuna_tuner,
    personalised_actions,
    realised_margin,
)
from training.uplift import Encoder, fit_base_learner, fit_uplift  # noqa: E402

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
SHRINKS = (0.0, 0.5, 1.0)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def consenting(export: pd.DataFrame) -> pd.DataFrame:
    return export[export["consent_email"].astype(bool) & export["consent_push"].astype(bool)].reset_index(
        drop=True
    )


def logged(export: pd.DataFrame, cfg: Config) -> LoggedSet:
    X = export[ATTRS].copy()
    X["consent_sms"] = X["consent_sms"].astype(float)
    out = pd.DataFrame(
        {
            "conversion": export["converted"].astype(float),
            "margin": realised_margin(export["spend"], export["orders"], export["arm"], cfg.offers),
            "revenue": export["spend"].astype(float),
            "n_orders": export["orders"].astype(float),
        }
    )
    return LoggedSet(
        X, export["arm"].to_numpy(object), export["propensity"].to_numpy(float), out, CATEGORICAL
    )


def greedy(eff: np.ndarray, arms: list[str]) -> np.ndarray:
    best = eff.argmax(axis=1)
    return np.where(eff.max(axis=1) > 0, np.array(arms, dtype=object)[best], "none")


def observable_ceiling(X: np.ndarray, m_choose: np.ndarray, m_value: np.ndarray, cat: list[int]) -> float:
    """Greedy on the truth regressed on the features (5-fold cross-fitted), valued on an independent truth."""
    folds = np.random.default_rng(1).integers(0, 5, len(X))
    pred = np.zeros_like(m_choose)
    for f in range(5):
        tr, te = folds != f, folds == f
        for j in range(1, m_choose.shape[1]):
            pred[te, j] = fit_base_learner(X[tr], m_choose[tr, j], False, cat, 3 + j, None).predict(X[te])
    acts = greedy(pred[:, 1:], list(SIM_OFFERS[1:]))
    col = {o: i for i, o in enumerate(SIM_OFFERS)}
    return float(m_value[np.arange(len(X)), [col[a] for a in acts]].mean())


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, object]:
    cfg = Config()
    t0, c0 = time.perf_counter(), cpu_seconds()
    sim = ShopSimulator(
        SimConfig(
            customers=args.customers,
            months=args.months,
            seed=seed,
            events=False,
            effect_scale=args.effect_scale,
        )
    )
    sim.run_history()
    history = []
    for k in range(args.campaigns, 0, -1):
        at = sim.now - pd.Timedelta(days=14 * k + 14)
        history.append(sim.randomized_campaign(at, offers=SIM_OFFERS, seed=100 + k, campaign=f"c{k}")[1])
    train_ex = consenting(pd.concat(history, ignore_index=True))
    test_ex = consenting(sim.randomized_campaign(sim.now, offers=SIM_OFFERS, seed=seed, campaign="test")[1])
    t_sim, c_sim = time.perf_counter() - t0, cpu_seconds() - c0

    t1, c1 = time.perf_counter(), cpu_seconds()
    tune = None
    tmp = None
    if args.tune:
        tmp = tempfile.TemporaryDirectory()
        tcfg = Config.model_validate({"paths": {"data_dir": tmp.name}})
        tcfg.training.optuna.trials, tcfg.training.optuna.timeout_seconds = args.trials, args.tune_timeout
        tune = optuna_tuner(tcfg, seed=seed)
    train, test = logged(train_ex, cfg), logged(test_ex, cfg)
    fit = learn_offer_model(train, test, cfg.offers, seed=seed, tune=tune)
    t_learn, c_learn = time.perf_counter() - t1, cpu_seconds() - c1
    if tmp is not None:
        tmp.cleanup()

    t2, c2 = time.perf_counter(), cpu_seconds()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(test_ex), min(args.truth_rows, len(test_ex)), replace=False))
    ids = test_ex.loc[rows, "customer_id"].tolist()
    cols = [f"expected_margin__{o}" for o in SIM_OFFERS]

    def truth(order: list[str]) -> np.ndarray:
        t = sim.truth(
            order,
            sim.now,
            horizon_days=cfg.offers.attribution_days,
            offers=SIM_OFFERS,
            spend_days=None,
            paths=args.paths,
        )
        return t.loc[ids, cols].to_numpy()

    # two independent Monte Carlo estimates (the oracle's random streams depend on the order of the ids)
    m_a, m_b = truth(ids), truth(ids[::-1])
    t_truth, c_truth = time.perf_counter() - t2, cpu_seconds() - c2
    m = (m_a + m_b) / 2
    r = np.arange(len(m))
    col = {o: i for i, o in enumerate(SIM_OFFERS)}

    def true_value(acts: np.ndarray) -> float:
        return float(m[r, [col[a] for a in acts]].mean())

    sub = test.take(rows)
    model = fit.model.margin
    M = model.encoder.transform(sub.X)
    acts = personalised_actions(model, M, "margin")  # type: ignore[arg-type]
    v_rebuy = true_value(acts)
    shrink_values = {
        f"v_shrink_{s:g}": true_value(personalised_actions(model.with_shrink(s), M, "margin"))  # type: ignore[union-attr]
        for s in SHRINKS
    }
    t3 = time.perf_counter()
    old = fit_uplift(
        train.X, train.arm, train.outcomes[["margin"]], "none", categorical=CATEGORICAL, seed=seed
    )
    v_margin_t = true_value(personalised_actions(old, old.encoder.transform(sub.X), "margin"))
    enc = Encoder.fit(sub.X, CATEGORICAL)
    v_ceiling = observable_ceiling(enc.transform(sub.X), m_a, m_b, enc.categorical_indices)
    t_compare = time.perf_counter() - t3
    v_oracle = float((m_b[r, m_a.argmax(axis=1)].mean() + m_a[r, m_b.argmax(axis=1)].mean()) / 2)
    const = m.mean(axis=0)
    v_random = float(m[:, 1:].mean())
    pol = fit.margin.policies.set_index(["policy", "method"])
    dr_incr = float(pol.loc[("personalised", "dr"), "value"] - pol.loc[("everyone:none", "dr"), "value"])
    se = float(np.hypot(pol.loc[("personalised", "dr"), "se"], pol.loc[("everyone:none", "dr"), "se"]))
    return {
        "seed": seed,
        "history_rows": len(train_ex),
        "test_rows": len(test_ex),
        "truth_rows": len(rows),
        "learner": fit.conversion.selection.chosen,  # type: ignore[union-attr]
        "shrink": model.shrink,  # type: ignore[union-attr]
        "v_rebuy": v_rebuy,
        **shrink_values,
        "v_margin_t_learner": v_margin_t,
        "v_observable_ceiling": v_ceiling,
        "v_oracle": v_oracle,
        "v_best_constant": float(const.max()),
        "best_constant": SIM_OFFERS[int(np.argmax(const))],
        "v_random": v_random,
        "share_rebuy": v_rebuy / v_oracle,
        "share_best_constant": float(const.max()) / v_oracle,
        "share_observable_ceiling": v_ceiling / v_oracle,
        "dr_estimate": dr_incr,
        "dr_se_unpaired_bound": se,
        "dr_rel_error": abs(dr_incr - v_rebuy) / abs(v_rebuy) if v_rebuy else float("nan"),
        "rebuy_actions": pd.Series(acts).value_counts().to_dict(),
        "tuning": fit.tuning.get("summary", {}).get("best_params") if fit.tuning else None,
        "seconds": {"simulate": t_sim, "learn": t_learn, "truth": t_truth, "comparisons": t_compare},
        "cpu_seconds": {"simulate": c_sim, "learn": c_learn, "truth": c_truth},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--campaigns", type=int, default=4, help="randomized campaigns in the history")
    ap.add_argument("--truth-rows", type=int, default=10_000)
    ap.add_argument("--effect-scale", type=float, default=1.0)
    ap.add_argument("--paths", type=int, default=64, help="Monte Carlo paths of the truth per customer")
    ap.add_argument("--tune", action="store_true", help="Optuna-tune the base learners (training.tuning)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--tune-timeout", type=int, default=120)
    args = ap.parse_args()
    telemetry_off()
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows = []
    with Progress() as bar:
        task = bar.add_task("seeds", total=args.seeds)
        for seed in range(1, args.seeds + 1):
            rows.append(one_seed(seed, args))
            bar.advance(task)
    df = pd.DataFrame(rows)
    v = {c: float(df[c].mean()) for c in df.columns if c.startswith("v_")}
    oracle = v["v_oracle"]
    summary = {
        **{k: round(x, 5) for k, x in v.items()},
        "share_rebuy_mean": v["v_rebuy"] / oracle,
        "share_best_constant_mean": v["v_best_constant"] / oracle,
        "share_observable_ceiling_mean": v["v_observable_ceiling"] / oracle,
        "share_random_mean": v["v_random"] / oracle,
        "rebuy_beats_best_constant": int((df["v_rebuy"] > df["v_best_constant"] + 1e-12).sum()),
        "rebuy_equals_best_constant": int(np.isclose(df["v_rebuy"], df["v_best_constant"]).sum()),
        "dr_mae_rel": float(df["dr_rel_error"].mean()),
        "dr_mae_abs": float((df["dr_estimate"] - df["v_rebuy"]).abs().mean()),
        "bar_share_085": bool(v["v_rebuy"] / oracle >= 0.85),
        "bar_above_best_constant": bool(v["v_rebuy"] > v["v_best_constant"]),
        "bar_dr_mae_010": bool(df["dr_rel_error"].mean() <= 0.10),
    }
    meta = {
        "machine": f"{platform.machine()}, 2 cores shared with other work",
        "load_average_end": os.getloadavg(),
        "python": platform.python_version(),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - c0,
        **vars(args),
    }
    suffix = ("" if args.effect_scale == 1.0 else f"-scale{args.effect_scale:g}") + (
        "-tuned" if args.tune else ""
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"offer{suffix}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "seeds": rows}, indent=2, default=str), encoding="utf-8"
    )
    la = ", ".join(f"{x:.1f}" for x in meta["load_average_end"])
    lines = [
        f"# Offer policy vs oracle ({args.seeds} seeds; history {int(df['history_rows'].mean()):,} randomized "
        f"decisions on average from {args.campaigns} campaigns; {args.customers:,}-customer shops, {args.months} "
        f"months; effect scale {args.effect_scale:g}{'; Optuna-tuned' if args.tune else ''})",
        "",
        f"{meta['machine']}; load average at the end {la}; wall {meta['wall_seconds']:.0f} s, "
        f"CPU {meta['cpu_seconds']:.0f} s.",
        "",
        "| policy | true incremental margin / customer (mean) | share of oracle |",
        "|---|---|---|",
    ]
    names = [
        ("oracle (best offer per customer by true effect)", "v_oracle"),
        ("observable ceiling (truth regressed on the features)", "v_observable_ceiling"),
        ("**rebuy** (greedy, no exploration)", "v_rebuy"),
        *[(f"rebuy at fixed shrink {s:g}", f"v_shrink_{s:g}") for s in SHRINKS],
        ("T-learner on realised margin (session 1)", "v_margin_t_learner"),
        ("best constant offer", "v_best_constant"),
        ("random offer", "v_random"),
    ]
    for name, key in names:
        lines.append(f"| {name} | {v[key]:.4f} | {v[key] / oracle:.1%} |")
    lines += [
        "",
        f"- rebuy above the best constant in {summary['rebuy_beats_best_constant']}/{args.seeds} seeds, equal "
        f"(it chose the best arm for everyone) in {summary['rebuy_equals_best_constant']}",
        f"- DR estimate of rebuy's incremental value: mean relative error {summary['dr_mae_rel']:.1%}, mean "
        f"absolute error {summary['dr_mae_abs']:.4f} per customer (bar ≤ 10%)",
        f"- bars: ≥85% of oracle {'met' if summary['bar_share_085'] else 'NOT met'}; above best constant "
        f"{'met' if summary['bar_above_best_constant'] else 'NOT met'}; DR MAE ≤ 10% "
        f"{'met' if summary['bar_dr_mae_010'] else 'NOT met'}",
        "",
        "| seed | history | learner | shrink | rebuy | ceiling | oracle | best const | T on margin | DR estimate "
        "(± 1.96·se bound) | DR rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['history_rows']:,} | {r['learner']} | {r['shrink']:g} | {r['v_rebuy']:.4f} | "
            f"{r['v_observable_ceiling']:.4f} | {r['v_oracle']:.4f} | {r['v_best_constant']:.4f} "
            f"({r['best_constant']}) | {r['v_margin_t_learner']:.4f} | {r['dr_estimate']:.4f} "
            f"(± {1.96 * r['dr_se_unpaired_bound']:.3f}) | {r['dr_rel_error']:.1%} |"
        )
    inside = int(((df["dr_estimate"] - df["v_rebuy"]).abs() <= 1.96 * df["dr_se_unpaired_bound"]).sum())
    lines += [
        "",
        "## Reading it",
        "",
        f"- The oracle chooses by hidden traits (price sensitivity, message aversion, each customer's own "
        f"response noise). The simulator's exact truth regressed on the same features reaches "
        f"{v['v_observable_ceiling'] / oracle:.1%} of it: no learner on these features can do better, whatever "
        "the history size"
        + (
            ", so the 85% bar cannot be met on this shop by construction."
            if v["v_observable_ceiling"] / oracle < 0.85
            else "."
        ),
        f"- Between the best constant offer and that ceiling lie {(v['v_observable_ceiling'] - v['v_best_constant']):.4f} "
        "per customer. rebuy personalises only when the paired DR difference on validation rows surely beats "
        "the best arm for everyone (else it is that arm): equal to the best constant when it does not, "
        "worse when a noisy validation win does not carry over.",
        f"- The DR estimate's own 95% half-width on the held-out campaign is about "
        f"{1.96 * df['dr_se_unpaired_bound'].mean():.3f} per customer ({v['v_rebuy']:.4f} is the value); "
        f"{inside}/{len(df)} estimates lie within it. Where it is wider than a tenth of the value, a 10% error "
        "bar needs many more held-out decisions (a margin's noise, not the estimator, sets it).",
    ]
    (out / f"offer{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
