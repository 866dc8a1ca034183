"""Next-best-offer benchmark: the true value of rebuy's offer policy against the oracle, and the DR error.

Fixed history size. For each seed a shop is simulated (100k customers, 12 months) and, as a shop
that explores would have, `--campaigns` randomized campaigns over every offer two weeks apart before its end
(uniform arms; ≈ 100k decisions in all) form the history rebuy learns from. A further randomized campaign at
the end is the held-out set: rebuy's doubly robust estimate is computed on all of it, and the simulator's
truth (expected incremental margin of every offer per customer, exploration off) on a random
`--truth-rows` of it gives each policy's true value (mean incremental margin per customer vs sending nothing).

X, the same for the model, the ceilings and the reward models (`--features`):
- `rebuy` (default): rebuy's offer FeatureService `offer_v1` as it ships, computed by features.compute at each
  campaign's send time from the simulated tables (orders AND behaviour events) up to that time;
- `attrs`: the simulator's 10 send-time attributes, orders only (what sessions 1-3 measured).

Rows:

- rebuy: `training.offer.learn_offer_model`, the path of `rebuy train offer`, greedy: two margin paths
  compete on validation rows by paired DR (conversion uplift model kept by Qini × the catalogue's economics
  with a shrink chosen on validation rows, against a T-learner on the realised margin); both paths, the
  shrinks and "the path by the point estimate" are valued too, for comparison;
- ceilings: the truth itself regressed on the same features (5-fold cross-fitted), greedy — what any
  learner on these features could reach with unlimited data — and, as diagnostics only, on the features plus
  each customer's own responses in the past randomized campaigns (the only trace of price sensitivity),
  plus every hidden trait and state but price sensitivity, aversion and the noise (a perfect behavioural
  trace), both, plus hidden price sensitivity and message aversion, plus every hidden trait and state but
  each customer's own response noise, and plus that noise too (what the regression itself loses);
- oracle: the best offer per customer by true effect (chosen on one Monte Carlo estimate of the truth and
  valued on an independent one, so the oracle's own noise does not inflate it);
- best constant offer (or nothing), random offer;
- off-policy estimates of rebuy − nobody on the held-out campaign: IPS, SNIPS, DR and self-normalised DR, on
  the realised margin and on conversion × the expected margin of a converter (known economics), with the
  history-fitted reward model and with one cross-fitted on the held-out rows; each one's error against the
  truth.

Bars (issue 6): rebuy ≥ 85% of the oracle and above the best constant; the DR estimate of rebuy's value
(paired DR, rebuy − nobody, on the held-out campaign) within 10% of the truth on average (MAE).

Customers are restricted to those who consent to email and push, so every offer reaches them on its own
configured channel — the channel the truth API values it on, with the costs it charges.

Run on demand: `.venv/bin/python benchmarks/offer.py [--seeds 5] [--effect-scale 1] [--features rebuy|attrs]
[--tune]` (`--render results.json` rewrites the markdown of a saved run; `--ceiling-groups` runs only the
ceilings, by hidden-trait group). Writes benchmarks/results/offer.json and offer.md (suffix `-attrs` /
`-scaleX` / `-tuned` when not the defaults; offer-ceilings*.{json,md} for `--ceiling-groups`).
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
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this folder holds scripts named like packages (features.py, train.py)

from features.compute import compute_features, epoch_seconds, request_time_features  # noqa: E402
from features.training_set import feature_names  # noqa: E402
from rebuy.config import Config  # noqa: E402
from rebuy.simulator import SIM_OFFERS, ShopSimulator, SimConfig  # noqa: E402
from rebuy.timeutil import telemetry_off  # noqa: E402
from training.offer import (  # noqa: E402
    FEATURE_SERVICE,
    LoggedSet,
    MarginModel,
    learn_offer_model,
    one_hot,
    optuna_tuner,
    personalised_actions,
    realised_margin,
)
from training.ope import ESTIMATORS, difference  # noqa: E402
from training.uplift import Encoder, fit_base_learner  # noqa: E402
from training.yardstick import TRAITS  # noqa: E402

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


def attrs_matrix(export: pd.DataFrame) -> pd.DataFrame:
    """The simulator's send-time attributes (`--features attrs`): what last sessions' runs learned from."""
    X = export[ATTRS].copy()
    X["consent_sms"] = X["consent_sms"].astype(float)
    return X


def rebuy_matrix(tables: dict[str, pd.DataFrame], exports: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """rebuy's offer FeatureService columns (`offer_v1`) per export row, as of the campaign's send time.

    The package's own computation (features.compute: stored families at the cutoff, then the request-time
    features at it), the same values Feast's as-of join returns from snapshots at that cutoff, without
    writing a store. One computation for every campaign's (customer, send time) pairs.
    """
    names = feature_names(Config(), FEATURE_SERVICE)
    pairs = pd.concat(
        [e[["customer_id"]].assign(cutoff=e["sent_at"].dt.as_unit("ns")) for e in exports], ignore_index=True
    )
    f = compute_features(tables, pairs)
    rt = request_time_features(f, epoch_seconds(f["cutoff"]))
    for k, col in rt.items():
        f[k] = col
    X = f[names].astype(float)
    bounds = np.cumsum([0, *(len(e) for e in exports)])
    return [X.iloc[a:b].reset_index(drop=True) for a, b in pairwise(bounds)]


def logged(export: pd.DataFrame, X: pd.DataFrame, cfg: Config) -> LoggedSet:
    out = pd.DataFrame(
        {
            "conversion": export["converted"].astype(float),
            "margin": realised_margin(
                export["spend"].to_numpy(float),
                export["orders"].to_numpy(float),
                export["arm"].to_numpy(object),
                cfg.offers,
            ),
            "revenue": export["spend"].astype(float),
            "n_orders": export["orders"].astype(float),
        }
    )
    cat = tuple(c for c in CATEGORICAL if c in X.columns)
    return LoggedSet(X, export["arm"].to_numpy(object), export["propensity"].to_numpy(float), out, cat)


def past_responses(history: list[pd.DataFrame], ids: list[str], cfg: Config) -> pd.DataFrame:
    """Each customer's own responses in the past randomized campaigns, one block of columns per arm.

    Per arm: how often the customer got it, their conversion and realised margin when they did (NaN when
    never): the only trace of price sensitivity the simulated shop leaves, as a decision log would keep it.
    """
    h = pd.concat(history, ignore_index=True)
    h = h.assign(
        conversion=h["converted"].astype(float),
        margin=realised_margin(
            h["spend"].to_numpy(float), h["orders"].to_numpy(float), h["arm"].to_numpy(object), cfg.offers
        ),
    )
    g = h.groupby(["customer_id", "arm"])[["conversion", "margin"]].agg(["size", "mean"])
    out = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    for a in SIM_OFFERS:
        per = g.xs(a, level="arm") if a in g.index.get_level_values("arm") else g.iloc[:0].droplevel(1)
        per = per.reindex(out.index)
        out[f"n__{a}"] = per[("conversion", "size")].fillna(0.0).to_numpy(float)
        out[f"conversion__{a}"] = per[("conversion", "mean")].to_numpy(float)
        out[f"margin__{a}"] = per[("margin", "mean")].to_numpy(float)
    return out.reset_index(drop=True)


def greedy(eff: np.ndarray, arms: list[str]) -> np.ndarray:
    best = eff.argmax(axis=1)
    return np.where(eff.max(axis=1) > 0, np.array(arms, dtype=object)[best], "none")


def regression_ceiling(X: np.ndarray, m_choose: np.ndarray, m_value: np.ndarray, cat: list[int]) -> float:
    """Greedy on the truth regressed on `X` (5-fold cross-fitted), valued on an independent truth."""
    folds = np.random.default_rng(1).integers(0, 5, len(X))
    pred = np.zeros_like(m_choose)
    for f in range(5):
        tr, te = folds != f, folds == f
        for j in range(1, m_choose.shape[1]):
            pred[te, j] = fit_base_learner(X[tr], m_choose[tr, j], False, cat, 3 + j, None).predict(X[te])
    acts = greedy(pred[:, 1:], list(SIM_OFFERS[1:]))
    col = {o: i for i, o in enumerate(SIM_OFFERS)}
    return float(m_value[np.arange(len(X)), [col[a] for a in acts]].mean())


def crossfit_q(
    X: np.ndarray, arm_idx: np.ndarray, y: np.ndarray, n_actions: int, cat: list[int]
) -> np.ndarray:
    """Reward model fitted on the held-out rows themselves, 2-fold cross-fitted (each row predicted by a model
    that never saw it): one regression per action on the other fold's rows of that action."""
    folds = np.random.default_rng(2).integers(0, 2, len(X))
    q = np.zeros((len(X), n_actions))
    for f in range(2):
        tr, te = folds != f, folds == f
        for j in range(n_actions):
            m = tr & (arm_idx == j)
            q[te, j] = fit_base_learner(X[m], y[m], False, cat, 30 + j, None).predict(X[te])
    return q


HIDDEN_TRAITS = ["price_sensitivity", "message_averse"]
# every hidden trait (the yardstick's list) and the state the simulator reports beside them
ALL_HIDDEN = [*TRAITS, "alive", "orders", "days_since_last_order"]


def ope_rows(
    pi: np.ndarray,
    nobody: np.ndarray,
    a_idx: np.ndarray,
    p: np.ndarray,
    ys: dict[str, np.ndarray],
    qs: dict[str, dict[str, np.ndarray]],
) -> dict[str, dict[str, float]]:
    """Paired estimates of V(rebuy) − V(nobody) by every estimator, outcome and reward model."""
    out: dict[str, dict[str, float]] = {}
    for oname, y in ys.items():
        for method in ESTIMATORS:
            variants: list[tuple[str, np.ndarray | None]] = (
                [("", None)] if method in ("ips", "snips") else [(f"/{qn}", q) for qn, q in qs[oname].items()]
            )
            for qn, q in variants:
                e = difference(method, pi, nobody, a_idx, p, y, q)
                out[f"{oname}/{method}{qn}"] = {"value": e.value, "se": e.se}
    return out


TRAIT_GROUPS: dict[str, list[str]] = {
    "price sensitivity + message aversion": ["price_sensitivity", "message_averse"],
    "alive (not dropped out)": ["alive"],
    "cycle (scale, shape, days since last order, orders)": [
        "cycle_scale_days",
        "cycle_shape",
        "days_since_last_order",
        "orders",
    ],
    "value and conversion (typical order value, conversion)": ["typical_value", "conversion"],
    "dropout and revival (p_drop, revive chance)": ["p_drop", "revive_chance"],
}


BEHAVIOURAL = [h for h in ALL_HIDDEN if h not in HIDDEN_TRAITS]  # all but price sensitivity and aversion


@dataclass
class SeedData:
    """One seed's shop with its history run, the past randomized campaigns and the held-out one."""

    sim: ShopSimulator
    history: list[pd.DataFrame]  # each past campaign's export (consenting customers)
    test_ex: pd.DataFrame
    train: LoggedSet
    test: LoggedSet


def seed_data(seed: int, args: argparse.Namespace, cfg: Config) -> SeedData:
    """The seed's shop (with events when rebuy's features are used), its campaigns, and X for each row.

    The campaigns are branches of the history (`randomized_campaign`): they do not rewrite the tables,
    so the features at every send time come from the same simulated tables.
    """
    sim = ShopSimulator(
        SimConfig(
            customers=args.customers,
            months=args.months,
            seed=seed,
            events=args.features == "rebuy",
            effect_scale=args.effect_scale,
        )
    )
    tables = sim.run_history()
    history = []
    for k in range(args.campaigns, 0, -1):
        at = sim.now - pd.Timedelta(days=14 * k + 14)
        ex = sim.randomized_campaign(at, offers=SIM_OFFERS, seed=100 + k, campaign=f"c{k}")[1]
        history.append(consenting(ex))
    test_ex = consenting(sim.randomized_campaign(sim.now, offers=SIM_OFFERS, seed=seed, campaign="test")[1])
    exports = [*history, test_ex]
    Xs = rebuy_matrix(tables, exports) if args.features == "rebuy" else [attrs_matrix(e) for e in exports]
    del tables
    train = logged(pd.concat(history, ignore_index=True), pd.concat(Xs[:-1], ignore_index=True), cfg)
    return SeedData(sim, history, test_ex, train, logged(test_ex, Xs[-1], cfg))


def ceilings(
    d: SeedData, rows: np.ndarray, ids: list[str], m_a: np.ndarray, m_b: np.ndarray, cfg: Config
) -> dict[str, float]:
    """The truth regressed on the run's features, alone and with more than a shop could see (diagnostics).

    `past responses`: each customer's arm and outcome in the past randomized campaigns (the decision log's
    trace); `behavioural`: every hidden trait and state but price sensitivity, aversion and the noise (what
    a perfect trace of everything the simulator emits outside offer responses could reveal).
    """
    sub = d.test.take(rows)
    enc = Encoder.fit(sub.X, sub.categorical)
    Xo, cat = enc.transform(sub.X), enc.categorical_indices
    hidden = d.sim.customer_truth().set_index("customer_id").loc[ids]
    past = past_responses(d.history, ids, cfg).to_numpy(float)
    behav = hidden[BEHAVIOURAL].to_numpy(float)
    h_all = hidden[ALL_HIDDEN].to_numpy(float)
    noise = d.sim.traits.noise[d.sim._index(ids)]  # each customer's own response noise (diagnostic only)

    def ceil(*more: np.ndarray) -> float:
        return regression_ceiling(np.column_stack([Xo, *more]), m_a, m_b, cat)

    return {
        "v_observable_ceiling": ceil(),
        "v_ceiling_past_responses": ceil(past),
        "v_ceiling_behavioural": ceil(behav),
        "v_ceiling_behavioural_past": ceil(behav, past),
        "v_ceiling_plus_traits": ceil(hidden[HIDDEN_TRAITS].to_numpy(float)),
        "v_ceiling_all_but_noise": ceil(h_all),
        "v_ceiling_all": ceil(h_all, noise),
    }


def true_margins(
    sim: ShopSimulator, cfg: Config, test_ex: pd.DataFrame, seed: int, args: argparse.Namespace
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """A seeded sample of the held-out customers and the truth's expected margin of every offer for them.

    Twice, as two independent Monte Carlo estimates (the oracle's random streams depend on the order of
    the ids): one chooses the best offer, the other values the choice, so the oracle is not flattered.
    """
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

    return rows, ids, truth(ids), truth(ids[::-1])


def ceiling_groups(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Diagnostic only: the truth regressed on the features plus one group of hidden traits at a time."""
    cfg = Config()
    d = seed_data(seed, args, cfg)
    rows, ids, m_a, m_b = true_margins(d.sim, cfg, d.test_ex, seed, args)
    r = np.arange(len(ids))
    v_oracle = float((m_b[r, m_a.argmax(axis=1)].mean() + m_a[r, m_b.argmax(axis=1)].mean()) / 2)
    sub = d.test.take(rows)
    enc = Encoder.fit(sub.X, sub.categorical)
    Xo, cat = enc.transform(sub.X), enc.categorical_indices
    hidden = d.sim.customer_truth().set_index("customer_id").loc[ids]
    out: dict[str, Any] = {"seed": seed, "v_oracle": v_oracle}
    for name, g in TRAIT_GROUPS.items():
        out[name] = regression_ceiling(np.column_stack([Xo, hidden[g].to_numpy(float)]), m_a, m_b, cat)
    c = ceilings(d, rows, ids, m_a, m_b, cfg)
    out["features"] = c["v_observable_ceiling"]
    out.update({CEILING_ROWS[k]: c[k] for k in CEILING_ROWS if k != "v_observable_ceiling"})  # + the rest
    return out


CEILING_ROWS = {
    "v_observable_ceiling": "features",
    "v_ceiling_past_responses": "own responses in the past randomized campaigns (arm, conversion, margin)",
    "v_ceiling_behavioural": "every hidden trait and state but price sensitivity, aversion and the noise",
    "v_ceiling_behavioural_past": "both of the above",
    "v_ceiling_all_but_noise": "all but noise",
    "v_ceiling_all": "all + each customer's own noise",
}


def feature_suffix(args: argparse.Namespace) -> str:
    return "" if args.features == "rebuy" else f"-{args.features}"


FEATURE_TEXT = {
    "rebuy": "rebuy's offer FeatureService offer_v1 (40 columns, events on)",
    "attrs": "the simulator's 10 send-time attributes (orders only)",
}


def run_ceiling_groups(args: argparse.Namespace) -> None:
    t0, c0 = time.perf_counter(), cpu_seconds()
    res = []
    with Progress() as bar:
        task = bar.add_task("ceiling groups", total=args.seeds)
        for seed in range(1, args.seeds + 1):
            res.append(ceiling_groups(seed, args))
            bar.advance(task)
    df = pd.DataFrame(res)
    meta: dict[str, Any] = {
        "machine": f"{platform.machine()}, 2 cores shared with other work",
        "load_average_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - c0,
        **{k: str(x) if isinstance(x, Path) else x for k, x in vars(args).items()},
    }
    suffix = feature_suffix(args) + ("" if args.effect_scale == 1.0 else f"-scale{args.effect_scale:g}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"offer-ceilings{suffix}.json").write_text(
        json.dumps({"meta": meta, "seeds": res}, indent=2, default=str), encoding="utf-8"
    )
    o = df["v_oracle"].mean()
    la = ", ".join(f"{x:.1f}" for x in meta["load_average_end"])
    lines = [
        f"# Offer ceilings by hidden-trait group (diagnostic; {args.seeds} seeds, effect scale "
        f"{args.effect_scale:g}, {args.customers:,} customers, {args.truth_rows:,} truth rows; features: "
        f"{FEATURE_TEXT[args.features]})",
        "",
        f"{meta['machine']}; load average at the end {la}; wall {meta['wall_seconds']:.0f} s, CPU "
        f"{meta['cpu_seconds']:.0f} s. The truth regressed (5-fold cross-fitted) on the features plus one "
        "group of the simulator's hidden traits at a time, greedy, valued on an independent truth draw.",
        "",
        "| regression also sees | share of oracle (mean) | per seed |",
        "|---|---|---|",
    ]
    cols = [CEILING_ROWS["v_observable_ceiling"], *TRAIT_GROUPS]
    cols += [CEILING_ROWS[k] for k in CEILING_ROWS if k != "v_observable_ceiling"]
    for c in cols:
        per = ", ".join(f"{x / y:.1%}" for x, y in zip(df[c], df["v_oracle"], strict=True))
        lines.append(f"| {'nothing more' if c == 'features' else c} | {df[c].mean() / o:.1%} | {per} |")
    (out / f"offer-ceilings{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    cfg = Config()
    t0, c0 = time.perf_counter(), cpu_seconds()
    d = seed_data(seed, args, cfg)
    sim, test_ex, train, test = d.sim, d.test_ex, d.train, d.test
    train_ex = pd.concat(d.history, ignore_index=True)
    t_sim, c_sim = time.perf_counter() - t0, cpu_seconds() - c0

    t1, c1 = time.perf_counter(), cpu_seconds()
    tune = None
    tmp = None
    if args.tune:
        tmp = tempfile.TemporaryDirectory()
        tcfg = Config.model_validate({"paths": {"data_dir": tmp.name}})
        tcfg.training.optuna.trials = args.trials
        tune = optuna_tuner(tcfg, seed=seed)
    fit = learn_offer_model(train, test, cfg.offers, seed=seed, tune=tune)
    t_learn, c_learn = time.perf_counter() - t1, cpu_seconds() - c1
    if tmp is not None:
        tmp.cleanup()

    t2, c2 = time.perf_counter(), cpu_seconds()
    rows, ids, m_a, m_b = true_margins(sim, cfg, test_ex, seed, args)
    t_truth, c_truth = time.perf_counter() - t2, cpu_seconds() - c2
    m = (m_a + m_b) / 2
    r = np.arange(len(m))
    col = {o: i for i, o in enumerate(SIM_OFFERS)}

    def true_value(acts: np.ndarray) -> float:
        return float(m[r, [col[a] for a in acts]].mean())

    sub = test.take(rows)
    model = fit.model.margin
    M = model.encoder.transform(sub.X)
    acts = personalised_actions(model, M, "margin")
    v_rebuy = true_value(acts)
    conv_path = fit.candidates["conversion_economics"]
    t_path = fit.candidates["realised_margin_t"]
    assert isinstance(conv_path, MarginModel)
    v_conv_path = true_value(personalised_actions(conv_path, M, "margin"))
    v_t_path = true_value(personalised_actions(t_path, M, "margin"))
    shrink_values = {
        f"v_shrink_{s:g}": true_value(personalised_actions(conv_path.with_shrink(s), M, "margin"))
        for s in SHRINKS
    }
    paths = fit.paths.set_index("path")
    point_path = str(
        paths.loc[(paths["value"] > 0) | (paths.index == "conversion_economics"), "value"].idxmax()
    )
    v_point = v_conv_path if point_path == "conversion_economics" else v_t_path

    # ceilings: the exact truth regressed on what a learner could see, and on more (diagnostics only)
    t3, c3 = time.perf_counter(), cpu_seconds()
    ceils = ceilings(d, rows, ids, m_a, m_b, cfg)
    t_ceiling, c_ceiling = time.perf_counter() - t3, cpu_seconds() - c3

    # off-policy estimates of rebuy − nobody on the whole held-out campaign, by estimator and outcome
    t4, c4 = time.perf_counter(), cpu_seconds()
    actions = ["none", *conv_path.arms]
    Mt = conv_path.encoder.transform(test.X)
    a_idx = np.array([actions.index(a) for a in test.arm])
    pi = one_hot(personalised_actions(model, Mt, "margin"), actions)
    nobody = one_hot(np.full(len(test), "none", dtype=object), actions)
    conv = test.outcomes["conversion"].to_numpy(float)
    ys = {
        "realised": test.outcomes["margin"].to_numpy(float),
        "modelled": conv_path.modelled_margin(Mt, test.arm, conv),
    }
    q_model = conv_path.levels_matrix(Mt, "margin", actions)
    qs = {
        o: {
            "model": q_model,
            "crossfit": crossfit_q(Mt, a_idx, y, len(actions), conv_path.encoder.categorical_indices),
        }
        for o, y in ys.items()
    }
    ope = ope_rows(pi, nobody, a_idx, test.propensity, ys, qs)
    t_ope, c_ope = time.perf_counter() - t4, cpu_seconds() - c4

    v_oracle = float((m_b[r, m_a.argmax(axis=1)].mean() + m_a[r, m_b.argmax(axis=1)].mean()) / 2)
    const = m.mean(axis=0)
    v_random = float(m[:, 1:].mean())
    pol = fit.margin.policies
    drv = {
        str(p): (float(v), float(e))
        for p, v, e in pol.loc[pol["method"] == "dr", ["policy", "value", "se"]].itertuples(index=False)
    }
    dr_incr = drv["personalised"][0] - drv["everyone:none"][0]
    se = float(np.hypot(drv["personalised"][1], drv["everyone:none"][1]))
    return {
        "seed": seed,
        "history_rows": len(train_ex),
        "test_rows": len(test_ex),
        "truth_rows": len(rows),
        "learner": fit.conversion.selection.chosen if fit.conversion.selection else None,
        "shrink": conv_path.shrink,
        "margin_path": fit.model.meta["margin_path"],
        "margin_path_point_rule": point_path,
        "paths_valid_dr": fit.paths.to_dict(orient="records"),
        "v_rebuy": v_rebuy,
        "v_conversion_path": v_conv_path,
        "v_realised_t_path": v_t_path,
        "v_rebuy_point_rule": v_point,
        **shrink_values,
        **ceils,
        "v_oracle": v_oracle,
        "v_best_constant": float(const.max()),
        "best_constant": SIM_OFFERS[int(np.argmax(const))],
        "v_random": v_random,
        "share_rebuy": v_rebuy / v_oracle,
        "share_best_constant": float(const.max()) / v_oracle,
        "share_observable_ceiling": ceils["v_observable_ceiling"] / v_oracle,
        "dr_estimate": dr_incr,
        "dr_se_unpaired_bound": se,
        "dr_rel_error": abs(dr_incr - v_rebuy) / abs(v_rebuy) if v_rebuy else float("nan"),
        "ope": ope,
        "rebuy_actions": pd.Series(acts).value_counts().to_dict(),
        "tuning": fit.tuning.get("summary", {}).get("best_params") if fit.tuning else None,
        "seconds": {
            "simulate": t_sim,
            "learn": t_learn,
            "truth": t_truth,
            "ceilings": t_ceiling,
            "ope": t_ope,
        },
        "cpu_seconds": {
            "simulate": c_sim,
            "learn": c_learn,
            "truth": c_truth,
            "ceilings": c_ceiling,
            "ope": c_ope,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--campaigns", type=int, default=4, help="randomized campaigns in the history")
    ap.add_argument(
        "--features",
        choices=("rebuy", "attrs"),
        default="rebuy",
        help="rebuy: the offer FeatureService (offer_v1) on the shop's tables with events; attrs: the "
        "simulator's 10 send-time attributes, orders only (sessions 1-3)",
    )
    ap.add_argument("--truth-rows", type=int, default=10_000)
    ap.add_argument("--effect-scale", type=float, default=1.0)
    ap.add_argument("--paths", type=int, default=64, help="Monte Carlo paths of the truth per customer")
    ap.add_argument("--tune", action="store_true", help="Optuna-tune the base learners (training.tuning)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    ap.add_argument("--render", type=Path, help="only rewrite the markdown (and summary) from a saved JSON")
    ap.add_argument(
        "--ceiling-groups", action="store_true", help="diagnostic only: ceilings by hidden-trait group"
    )
    args = ap.parse_args()
    if args.ceiling_groups:
        telemetry_off()
        run_ceiling_groups(args)
        return
    if args.render is not None:
        doc = json.loads(args.render.read_text(encoding="utf-8"))
        for k in ("seeds", "customers", "months", "campaigns", "effect_scale", "tune"):
            setattr(args, k, doc["meta"][k])
        args.features = doc["meta"].get("features", "attrs")  # runs before --features were attrs
        report(doc["seeds"], doc["meta"], args)
        return
    telemetry_off()
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows: list[dict[str, Any]] = []
    with Progress() as bar:
        task = bar.add_task("seeds", total=args.seeds)
        for seed in range(1, args.seeds + 1):
            rows.append(one_seed(seed, args))
            bar.advance(task)
    meta = {
        "machine": f"{platform.machine()}, 2 cores shared with other work",
        "load_average_end": os.getloadavg(),
        "python": platform.python_version(),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - c0,
        **{k: str(x) if isinstance(x, Path) else x for k, x in vars(args).items()},
    }
    report(rows, meta, args)


def report(rows: list[dict[str, Any]], meta: dict[str, Any], args: argparse.Namespace) -> None:
    """Summary, JSON and markdown of one run (also from a saved JSON, `--render`)."""
    df = pd.DataFrame(rows)
    v = {c: float(df[c].mean()) for c in df.columns if c.startswith("v_")}
    oracle = v["v_oracle"]
    # every OPE variant: mean relative and absolute error of V(rebuy) − V(nobody) against the truth
    ope_keys = list(rows[0]["ope"])
    ope_err = {}
    for k in ope_keys:
        est = np.array([r["ope"][k]["value"] for r in rows])
        se_k = np.array([r["ope"][k]["se"] for r in rows])
        truth_v = df["v_rebuy"].to_numpy()
        ope_err[k] = {
            "mae_rel": float(np.mean(np.abs(est - truth_v) / np.abs(truth_v))),
            "mae_abs": float(np.mean(np.abs(est - truth_v))),
            "bias": float(np.mean(est - truth_v)),
            "half_width": float(np.mean(1.96 * se_k)),
            "covered": int((np.abs(est - truth_v) <= 1.96 * se_k).sum()),
        }
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
        "ope_errors": ope_err,
        "bar_share_085": bool(v["v_rebuy"] / oracle >= 0.85),
        "bar_above_best_constant": bool(v["v_rebuy"] > v["v_best_constant"]),
        "bar_dr_mae_010": bool(df["dr_rel_error"].mean() <= 0.10),
    }
    suffix = (
        feature_suffix(args)
        + ("" if args.effect_scale == 1.0 else f"-scale{args.effect_scale:g}")
        + ("-tuned" if args.tune else "")
    )
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"offer{suffix}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "seeds": rows}, indent=2, default=str), encoding="utf-8"
    )
    la = ", ".join(f"{x:.1f}" for x in meta["load_average_end"])
    lines = [
        f"# Offer policy vs oracle ({args.seeds} seeds; history {int(df['history_rows'].mean()):,} randomized "
        f"decisions on average from {args.campaigns} campaigns; {args.customers:,}-customer shops, {args.months} "
        f"months; effect scale {args.effect_scale:g}{'; Optuna-tuned' if args.tune else ''}; features: "
        f"{FEATURE_TEXT[args.features]})",
        "",
        f"{meta['machine']}; load average at the end {la}; wall {meta['wall_seconds']:.0f} s, "
        f"CPU {meta['cpu_seconds']:.0f} s.",
        "",
        "| policy | true incremental margin / customer (mean) | share of oracle |",
        "|---|---|---|",
    ]
    names = [
        ("oracle (best offer per customer by true effect)", "v_oracle"),
        (
            "ceiling: truth regressed on the features + every hidden trait and each customer's noise "
            "(diagnostic: what the regression itself loses)",
            "v_ceiling_all",
        ),
        (
            "ceiling: features + every hidden trait and state, but not each customer's own noise "
            "(diagnostic)",
            "v_ceiling_all_but_noise",
        ),
        (
            "ceiling: features + hidden price sensitivity and message aversion (diagnostic)",
            "v_ceiling_plus_traits",
        ),
        (
            "ceiling: features + every hidden trait and state but price sensitivity, aversion and the noise "
            "+ own past responses (diagnostic)",
            "v_ceiling_behavioural_past",
        ),
        (
            "ceiling: features + every hidden trait and state but price sensitivity, aversion and the noise "
            "(diagnostic: a perfect behavioural trace)",
            "v_ceiling_behavioural",
        ),
        (
            "ceiling: features + own responses in the past randomized campaigns (arm, conversion, margin)",
            "v_ceiling_past_responses",
        ),
        ("observable ceiling (truth regressed on the features)", "v_observable_ceiling"),
        ("**rebuy** (greedy, no exploration; margin path chosen on validation, lower-bound rule)", "v_rebuy"),
        ("rebuy if the path were chosen by the point estimate", "v_rebuy_point_rule"),
        ("path: conversion × economics, shrunk", "v_conversion_path"),
        *[(f"path: conversion × economics at fixed shrink {s:g}", f"v_shrink_{s:g}") for s in SHRINKS],
        ("path: T-learner on realised margin", "v_realised_t_path"),
        ("best constant offer", "v_best_constant"),
        ("random offer", "v_random"),
    ]
    for name, key in names:
        if key not in v:  # a saved run from before the row existed
            continue
        lines.append(f"| {name} | {v[key]:.4f} | {v[key] / oracle:.1%} |")
    chosen_t = int((df["margin_path"] == "realised_margin_t").sum())
    t_better = int((df["v_realised_t_path"] > df["v_conversion_path"] + 1e-12).sum())
    lines += [
        "",
        f"- margin path kept: T-learner on realised margin in {chosen_t}/{args.seeds} seeds (lower-bound rule), "
        f"{int((df['margin_path_point_rule'] == 'realised_margin_t').sum())}/{args.seeds} by the point "
        f"estimate; by the truth it was the better path in {t_better}/{args.seeds}",
        f"- rebuy above the best constant in {summary['rebuy_beats_best_constant']}/{args.seeds} seeds, equal "
        f"(it chose the best arm for everyone) in {summary['rebuy_equals_best_constant']}",
        f"- DR estimate of rebuy's incremental value as `rebuy train offer` reports it (realised margin, the "
        f"kept model as reward model): mean relative error {summary['dr_mae_rel']:.1%}, mean "
        f"absolute error {summary['dr_mae_abs']:.4f} per customer (bar ≤ 10%)",
        f"- bars: ≥85% of oracle {'met' if summary['bar_share_085'] else 'NOT met'}; above best constant "
        f"{'met' if summary['bar_above_best_constant'] else 'NOT met'}; DR MAE ≤ 10% "
        f"{'met' if summary['bar_dr_mae_010'] else 'NOT met'}",
        "",
        "## Off-policy estimates of rebuy − nobody (paired, whole held-out campaign) against the truth",
        "",
        "outcome `realised`: the realised margin; `modelled`: conversion × the basket models' expected "
        "margin of a converter under the arm (known economics), an outcome with the basket noise removed "
        "(biased if an offer changes what a converter of the same features spends). Reward model `model`: "
        "the conversion-path model's levels (fitted on the history); `crossfit`: per-arm regressions on the "
        "held-out rows themselves, 2-fold cross-fitted. Propensities are uniform (1/6), so weight clipping "
        "would change nothing here and is not a row.",
        "",
        "| outcome / estimator / reward model | mean rel. error | mean abs. error | mean bias | mean 95% "
        "half-width | truth within the interval |",
        "|---|---|---|---|---|---|",
    ]
    for k, e in ope_err.items():
        lines.append(
            f"| {k} | {e['mae_rel']:.1%} | {e['mae_abs']:.4f} | {e['bias']:+.4f} | {e['half_width']:.4f} | "
            f"{e['covered']}/{args.seeds} |"
        )
    lines += [
        "",
        "| seed | history | learner | shrink | path (lower bound / point) | valid DR T − conv (low, high) | "
        "rebuy | conv path | T path | ceiling | oracle | best const | DR reported | DR rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pv = {p["path"]: p for p in r["paths_valid_dr"]}
        t = pv.get("realised_margin_t", {"value": float("nan"), "low": float("nan"), "high": float("nan")})
        lines.append(
            f"| {r['seed']} | {r['history_rows']:,} | {r['learner']} | {r['shrink']:g} | {r['margin_path']} / "
            f"{r['margin_path_point_rule']} | {t['value']:.4f} ({t['low']:.4f}, {t['high']:.4f}) | "
            f"{r['v_rebuy']:.4f} | {r['v_conversion_path']:.4f} | {r['v_realised_t_path']:.4f} | "
            f"{r['v_observable_ceiling']:.4f} | {r['v_oracle']:.4f} | {r['v_best_constant']:.4f} "
            f"({r['best_constant']}) | {r['dr_estimate']:.4f} (± {1.96 * r['dr_se_unpaired_bound']:.3f}) | "
            f"{r['dr_rel_error']:.1%} |"
        )
    lines += [
        "",
        "## Reading it",
        "",
        f"- Ceilings (shares of the oracle): features {v['v_observable_ceiling'] / oracle:.1%}; + hidden price "
        f"sensitivity and message aversion {v['v_ceiling_plus_traits'] / oracle:.1%}; + every hidden trait "
        f"and state but each customer's own noise {v['v_ceiling_all_but_noise'] / oracle:.1%}; + the noise "
        f"too {v['v_ceiling_all'] / oracle:.1%} (the regression's own loss)"
        + (
            f"; + every hidden trait and state but price sensitivity, aversion and the noise "
            f"{v['v_ceiling_behavioural'] / oracle:.1%}; + own past responses "
            f"{v['v_ceiling_past_responses'] / oracle:.1%}; both {v['v_ceiling_behavioural_past'] / oracle:.1%}."
            if "v_ceiling_behavioural" in v
            else "."
        ),
        f"- Margin paths (true shares of the oracle): conversion × economics "
        f"{v['v_conversion_path'] / oracle:.1%}, T-learner on realised margin {v['v_realised_t_path'] / oracle:.1%}"
        f", kept by validation {v['v_rebuy'] / oracle:.1%} (by the point estimate it would be "
        f"{v['v_rebuy_point_rule'] / oracle:.1%}).",
    ]
    unbiased = {k: e for k, e in ope_err.items() if k.startswith("realised/")}
    best_k = min(ope_err, key=lambda k: ope_err[k]["mae_rel"])
    best_u = min(unbiased, key=lambda k: unbiased[k]["half_width"])
    hw, val = unbiased[best_u]["half_width"], abs(v["v_rebuy"])
    need, n_test = 1.96 * 0.1 * val / np.sqrt(2 / np.pi), float(df["test_rows"].mean())
    lines += [
        f"- Off-policy error: the lowest mean relative error is {best_k} at {ope_err[best_k]['mae_rel']:.1%} "
        f"(half-width {ope_err[best_k]['half_width']:.4f}); over {args.seeds} seeds a mean error is itself "
        "noisy, so read the half-widths, which are the estimators' own spread. The narrowest estimator on the "
        f"realised margin (unbiased under the known propensities) is {best_u}, half-width {hw:.4f} against a "
        f"value of {val:.4f}: "
        + (
            # an unbiased, normal estimate misses by E|N(0, se)| = 0.80 se on average, so a mean error of
            # 10% of the value needs se <= 0.1 v / 0.80, i.e. a half-width of 0.245 v; se shrinks as 1/sqrt(n)
            f"a mean error within 10% needs a half-width near {need:.4f} (0.245 × the value), about "
            f"{(hw / need) ** 2:.0f}× the {n_test:,.0f} held-out decisions (≈ {(hw / need) ** 2 * n_test:,.0f})."
            if hw > need
            else "narrow enough for a mean error within 10%."
        )
        + " The modelled outcome removes the basket's "
        "noise but not the conversion's, and is biased where offers change what a converter spends (see its "
        "mean bias).",
    ]
    (out / f"offer{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
