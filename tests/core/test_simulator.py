"""The shop simulator on small shops: contract, reproducibility, replay, the oracle's API, step, save/load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rebuy.contract import SCHEMAS, TABLES
from rebuy.errors import DataError
from rebuy.simulator import SIM_OFFERS, ShopSimulator, SimConfig, write_tables
from rebuy.simulator.dynamics import State


def _tiny(seed: int = 3, **kw: object) -> ShopSimulator:
    return ShopSimulator(SimConfig(customers=400, months=6, seed=seed, **kw))  # type: ignore[arg-type]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_same_seed_gives_byte_identical_tables_and_another_seed_does_not(tmp_path: Path) -> None:
    a = write_tables(_tiny(3).run_history(), tmp_path / "a")
    b = write_tables(_tiny(3).run_history(), tmp_path / "b")
    c = write_tables(_tiny(4).run_history(), tmp_path / "c")
    assert set(_digest(a)) == {f"{t}.parquet" for t in TABLES}
    assert _digest(a) == _digest(b)
    differ = {k for k in _digest(a) if _digest(a)[k] != _digest(c)[k]}
    assert differ == {f"{t}.parquet" for t in TABLES}


def test_tables_follow_the_contract(small_shop) -> None:  # type: ignore[no-untyped-def]
    t = small_shop.tables
    for name in TABLES:
        SCHEMAS[name].validate(t[name])
    cust, orders, events = t["customers"], t["orders"], t["events"]
    assert len(events) > 0 and len(t["consent_updates"]) > 0
    assert all(isinstance(x, str) for x in cust["customer_id"].head(50))
    assert str(orders["ordered_at"].dtype) == "datetime64[ns, UTC]"
    assert str(cust["birthday"].dtype) == "datetime64[ns]"
    assert cust["timezone"].isin(["Europe/Berlin", "America/New_York"]).any()
    # nothing before signup, nothing after the end of the history
    signup = cust.set_index("customer_id")["signup_at"]
    assert (orders["ordered_at"] >= orders["customer_id"].map(signup)).all()
    assert (events["occurred_at"] >= events["customer_id"].map(signup)).all()
    assert orders["ordered_at"].max() < small_shop.sim.now
    assert set(events["event_type"]) >= {
        "view",
        "cart",
        "order_history_view",
        "delivery_check",
        "email_open",
        "app_open",
    }
    # offers and sales show as discounts; some orders come back
    assert (orders["discount"] > 0).mean() > 0.01 and (orders["returned_amount"] > 0).mean() > 0.01
    assert (orders["returned_amount"] <= orders["amount"] + 1e-9).all()


def test_events_flag_does_not_change_orders() -> None:
    with_ev = _tiny(5, events=True).run_history()
    without = _tiny(5, events=False).run_history()
    assert len(without["events"]) == 0 and len(with_ev["events"]) > 0
    pd.testing.assert_frame_equal(with_ev["orders"], without["orders"])


def test_replayed_state_matches_the_written_history(small_shop) -> None:  # type: ignore[no-untyped-def]
    sim, orders = small_shop.sim, small_shop.tables["orders"]
    day = 300
    st = sim.state_at(day)
    cutoff = sim.start + pd.Timedelta(days=day)
    counts = orders[orders["ordered_at"] < cutoff].groupby("customer_id").size()
    expected = pd.Series(sim.ids).map(counts).fillna(0).astype(int).to_numpy()
    assert np.array_equal(st.n_orders, expected)
    # replay from scratch (no snapshots) gives the very same state
    fresh = ShopSimulator(sim.config)
    fresh.day = sim.day
    scratch = fresh.state_at(day)
    for k, v in st.arrays().items():
        assert np.array_equal(v, scratch.arrays()[k]), k


def test_truth_columns_and_basic_sense(small_shop) -> None:  # type: ignore[no-untyped-def]
    sim = small_shop.sim
    ids = small_shop.tables["customers"]["customer_id"].head(300)
    at = sim.now - pd.Timedelta(days=90)
    tr = sim.truth(
        ids, at, horizon_days=30, offers=("none", "coupon_10pct", "wake_up_gift"), spend_days=180, paths=32
    )
    assert list(tr.index) == list(ids)
    for col in (
        "alive",
        "p_order",
        "p_order__coupon_10pct",
        "p_order__wake_up_gift",
        "expected_spend",
        "expected_days_to_next_order",
        "expected_margin__coupon_10pct",
        "expected_margin__wake_up_gift",
    ):
        assert col in tr.columns, col
    assert tr["p_order"].between(0, 1).all()
    assert (tr["expected_days_to_next_order"] <= 180).all() and (tr["expected_spend"] >= 0).all()
    # customers not yet signed up at `at` cannot order: the oracle says so
    late = sim.traits.signup_day[sim._index(ids)] >= sim.day_of(at) + 30
    assert late.any() and (tr.loc[late, "p_order"] == 0).all()
    # a longer horizon can only add probability (same paths)
    longer = sim.truth(ids, at, horizon_days=60, offers=("none",), spend_days=None, paths=32)
    assert (longer["p_order"] >= tr["p_order"] - 1e-12).all()


def test_truth_at_matches_truth_per_cutoff(small_shop) -> None:  # type: ignore[no-untyped-def]
    sim = small_shop.sim
    ids = list(small_shop.tables["customers"]["customer_id"].head(40))
    cut = [sim.now - pd.Timedelta(days=200), sim.now - pd.Timedelta(days=100)]
    pairs = pd.DataFrame(
        {"customer_id": ids * 2, "cutoff": [cut[0]] * 40 + [cut[1]] * 40}, index=pd.RangeIndex(100, 180)
    )
    both = sim.truth_at(pairs, horizon_days=30, offers=("none",), paths=16)
    assert list(both.index) == list(pairs.index)
    for c in cut:
        one = sim.truth(ids, c, horizon_days=30, offers=("none",), spend_days=None, paths=16)
        got = both[both["cutoff"] == c].set_index("customer_id")
        np.testing.assert_allclose(got["p_order"].to_numpy(), one["p_order"].to_numpy())


def test_step_delivers_coupons_and_is_reproducible() -> None:
    def run() -> tuple[ShopSimulator, dict[str, pd.DataFrame]]:
        sim = ShopSimulator(SimConfig(customers=1500, months=6, seed=21))
        sim.run_history()
        st = sim.state
        who = sim.ids[st.active & st.consent[:, 0]]
        dec = pd.DataFrame(
            {"customer_id": who, "decided_at": sim.now, "offer": "coupon_10pct", "channel": "email"}
        )
        return sim, sim.step(14, dec)

    sim, new = run()
    _, again = run()
    for t in TABLES:
        pd.testing.assert_frame_equal(new[t], again[t])
    assert sim.now == sim.start + pd.Timedelta(days=sim.config.days + 14)
    orders = new["orders"]
    # the coupon went to the customers signed up with email consent when it was sent (sign-ups during the
    # 14 days are not among them)
    treated = set(sim.ids[sim.state.eff_offer > 0])
    coupon = orders[orders["customer_id"].isin(treated)]
    assert len(coupon) > 20
    # orders of treated customers inside the effect window carry the 10% coupon
    ratio = coupon["discount"] / coupon["amount"]
    assert ((ratio - 0.10).abs() < 0.011).mean() > 0.9
    assert (sim.state.fatigue[sim.state.eff_offer > 0, 0] > 0).all()
    # delivered emails are opened on the day they arrive (a third of the active, fewer dormant; 3-4% on a usual day)
    ev = new["events"]
    first_day = ev[
        (ev["occurred_at"] < sim.start + pd.Timedelta(days=sim.config.days + 1))
        & (ev["event_type"] == "email_open")
    ]
    n_sent = int((sim.state.eff_offer > 0).sum())
    assert first_day["customer_id"].nunique() > 0.12 * n_sent


def test_step_rejects_bad_decisions() -> None:
    sim = ShopSimulator(SimConfig(customers=200, months=2, seed=1))
    sim.run_history()
    with pytest.raises(DataError, match="unknown customer_id"):
        sim.step(
            1,
            pd.DataFrame(
                {"customer_id": ["nope"], "decided_at": [sim.now], "offer": ["none"], "channel": ["email"]}
            ),
        )
    with pytest.raises(ValueError, match="unknown offers"):
        sim.step(
            1,
            pd.DataFrame(
                {
                    "customer_id": [sim.ids[0]],
                    "decided_at": [sim.now],
                    "offer": ["bogus"],
                    "channel": ["email"],
                }
            ),
        )
    with pytest.raises(DataError, match="lack columns"):
        sim.step(1, pd.DataFrame({"customer_id": [sim.ids[0]]}))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    sim = ShopSimulator(SimConfig(customers=500, months=4, seed=9))
    sim.run_history()
    dec = pd.DataFrame(
        {"customer_id": sim.ids[:50], "decided_at": sim.now, "offer": "points_x2", "channel": "push"}
    )
    sim.step(3, dec)
    sim.save(tmp_path / "truth")
    assert not list((tmp_path / "truth").glob("*.pkl"))
    back = ShopSimulator.load(tmp_path / "truth")
    assert back.now == sim.now
    for k, v in sim.state.arrays().items():
        assert np.array_equal(v, back.state.arrays()[k]), k
    at = sim.now - pd.Timedelta(days=30)
    pd.testing.assert_frame_equal(
        sim.truth(sim.ids[:80], at, offers=("none", "points_x2"), paths=8),
        back.truth(sim.ids[:80], at, offers=("none", "points_x2"), paths=8),
    )
    a, b = sim.step(2), back.step(2)
    for t in TABLES:
        pd.testing.assert_frame_equal(a[t], b[t])


def test_randomized_campaign_shapes(small_shop) -> None:  # type: ignore[no-untyped-def]
    sim = small_shop.sim
    at = sim.now - pd.Timedelta(days=60)
    decisions, export = sim.randomized_campaign(at, SIM_OFFERS, n_customers=600, seed=1)
    assert len(decisions) == len(export) == 600
    assert decisions["decision_id"].is_unique and set(decisions["offer"]) == set(SIM_OFFERS)
    assert np.allclose(decisions["propensity"], 1 / len(SIM_OFFERS))
    assert (decisions.loc[decisions["offer"] == "none", "group"] == "control").all()
    assert (decisions.loc[decisions["offer"] == "none", "channel"] == "none").all()
    for col in (
        "recency_days",
        "frequency",
        "monetary",
        "region",
        "arm",
        "propensity",
        "converted",
        "spend",
        "visited",
    ):
        assert col in export.columns, col
    # attributes at send time are what the tables show up to `at`
    o = small_shop.tables["orders"]
    freq = o[o["ordered_at"] < sim.start + pd.Timedelta(days=sim.day_of(at))].groupby("customer_id").size()
    assert (export["frequency"].to_numpy() == export["customer_id"].map(freq).to_numpy()).all()
    # the campaign is a branch: the simulator's own history is untouched
    assert sim.state_at(sim.day).n_orders.sum() == len(o)
    again, _ = sim.randomized_campaign(at, SIM_OFFERS, n_customers=600, seed=1)
    pd.testing.assert_frame_equal(decisions, again)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SimConfig(customers=0)
    with pytest.raises(ValueError):
        SimConfig(effects="random")  # type: ignore[arg-type]
    assert SimConfig(months=24, start="2024-01-01").days == 731
    assert isinstance(State, type)


def _effects(kind: str) -> pd.DataFrame:
    sim = ShopSimulator(SimConfig(customers=2500, months=12, seed=17, events=False, effects=kind))  # type: ignore[arg-type]
    sim.run_history()
    st = sim.state
    ids = sim.ids[st.active & st.alive & st.consent[:, 0] & (st.n_orders > 0)]
    tr = sim.truth(
        ids, sim.now, horizon_days=30, offers=SIM_OFFERS, spend_days=None, paths=8, channel="email"
    )
    return pd.DataFrame({o: tr[f"p_order__{o}"] - tr["p_order"] for o in SIM_OFFERS[1:]}).assign(
        **{f"m_{o}": tr[f"expected_margin__{o}"] for o in SIM_OFFERS[1:]}
    )


def test_effect_scenarios_favour_personalising_one_arm_or_nothing() -> None:
    het, uni, none = _effects("heterogeneous"), _effects("uniform"), _effects("none")
    offers = list(SIM_OFFERS[1:])
    # heterogeneous: every offer helps some and hurts others; no single offer is best for nearly everyone
    assert all((het[o] > 0).any() and (het[o] < 0).any() for o in offers)
    best = het[offers].idxmax(axis=1).value_counts(normalize=True)
    assert best.iloc[0] < 0.7 and len(best) >= 3
    # uniform: the coupon is the best offer for (almost) everyone and helps everyone
    assert (uni[offers].idxmax(axis=1) == "coupon_10pct").mean() > 0.9
    assert (uni["coupon_10pct"] > 0).all()
    # none: no offer raises the average purchase probability, and every offer loses margin on average
    assert all(none[o].mean() <= 0 for o in offers)
    assert all(none[f"m_{o}"].mean() < 0 for o in offers)


def test_exact_oracle_agrees_with_sampled_paths(small_shop) -> None:  # type: ignore[no-untyped-def]
    """The exact intent chain and Monte Carlo through `step` are the same model (within sampling error)."""
    from rebuy.simulator import dynamics as dyn

    sim = small_shop.sim
    day = sim.day - 120
    st = sim.state_at(day)
    ci = np.arange(sim.config.customers)
    arms = ["none", "coupon_10pct", "wake_up_gift"]
    codes = dyn.offer_index(np.array(arms, dtype=object))
    ex = sim._exact(st, ci, day, arms, codes, None, 30, 90)
    mc = sim._forward(st, ci, day, 48, arms, codes, None, 90, 30, 30, 90, 14)
    for a in arms:
        d = ex[f"p__{a}"] - mc[f"p__{a}"]
        z = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
        print(f"{a}: exact {ex[f'p__{a}'].mean():.4f}, sampled {mc[f'p__{a}'].mean():.4f}, z {z:+.2f}")
        assert abs(z) < 3.5, a
    d = ex["days_next"] - mc["days_next"]
    assert abs(d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))) < 3.5


def test_cli_simulate_writes_tables_truth_and_campaign(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    out = tmp_path / "shop"
    res = CliRunner().invoke(
        app,
        ["simulate", "--out", str(out), "--customers", "300", "--months", "3", "--seed", "2", "--campaign"],
    )
    assert res.exit_code == 0, res.output
    for t in TABLES:
        SCHEMAS[t].validate(pd.read_parquet(out / f"{t}.parquet"))
    back = ShopSimulator.load(out / "truth")
    assert back.config.customers == 300 and back.now == pd.Timestamp("2024-04-01", tz="UTC")
    export = pd.read_parquet(out / "campaign" / "export.parquet")
    assert {"arm", "propensity", "converted", "spend"} <= set(export.columns) and len(export) > 0
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path / "b"),
            "--customers",
            "300",
            "--months",
            "3",
            "--seed",
            "2",
            "--no-events",
        ],
    )
    assert res.exit_code == 0 and len(pd.read_parquet(tmp_path / "b" / "events.parquet")) == 0
