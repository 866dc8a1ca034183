"""Property tests: caps hold in every window (DST, timezones, passes out of order), opted-out and
forgotten customers never reach the sink, holdout is deterministic with the configured share, and
rerunning a pass changes nothing. Derandomized so the suite is reproducible."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from pipelines import decision_log as dl
from pipelines.orchestrator import forget, run_pass
from pipelines.policy_layer import apply_policy, in_control, in_holdout
from pipelines.sinks import sink_path
from rebuy.config import CapsConfig, Config
from rebuy.ingest import conform
from tests.support.fake_client import FakeScoreClient

from .conftest import AS_OF, config_for, make_shop

SETTINGS = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "UTC",
    "Asia/Kolkata",
]
# around the 2025 spring-forward in Europe (03-30) and the US (03-09) and Sydney's fall-back (04-06)
START = pd.Timestamp("2025-03-07 00:00", tz="UTC")


def _max_in_window(times: list[pd.Timestamp], window: pd.Timedelta) -> int:
    """Most messages in any half-open window [s, s + window): the maximum is reached starting at a message."""
    ts = sorted(times)
    return max((sum(1 for u in ts if t <= u < t + window) for t in ts), default=0)


@settings(SETTINGS, max_examples=40)
@given(
    hours=st.lists(st.integers(0, 24 * 35), min_size=3, max_size=25, unique=True),
    zones=st.lists(st.sampled_from(DST_ZONES), min_size=4, max_size=4),
    channels=st.lists(st.sampled_from(["email", "sms", "push"]), min_size=4, max_size=4),
    caps=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(2, 7)),
)
def test_caps_and_quiet_hours_hold_across_dst_and_out_of_order_passes(hours, zones, channels, caps) -> None:
    per, days, all_max, all_days = caps
    cfg = Config()
    capcfg = CapsConfig(
        per_channel={"email": (per, days), "sms": (per, days), "push": (per, days)},
        all_channels=(all_max, all_days),
        quiet_hours=(22, 7),
    )
    cfg = cfg.model_copy(
        update={"policy": cfg.policy.model_copy(update={"caps": capcfg, "holdout_share": 0.0})}
    )
    for t in cfg.policy.triggers:
        t.control_share = 0.0
    ids = [f"p{i}" for i in range(4)]
    tables = {
        "customers": conform(
            "customers",
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "signup_at": [START] * 4,
                    "timezone": zones,
                    "consent_email": [True] * 4,
                    "consent_sms": [True] * 4,
                    "consent_push": [True] * 4,
                }
            ),
        ),
        "consent_updates": conform(
            "consent_updates", pd.DataFrame(columns=["customer_id", "changed_at", "channel", "consent"])
        ),
    }
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": 0.5,
            "repurchase_probability": 0.5,
            "expected_days_to_next_order": 5.0,
            "expected_value": 50.0,
            "segment": "potential",
            "offer_estimates": [{"coupon_10pct": 3.0, "points_x2": 2.0} for _ in ids],
            "best_offer": "coupon_10pct",
            "reasons": [[] for _ in ids],
            "model_versions": [{} for _ in ids],
            "feature_age_seconds": 0.0,
            "cold_start": False,
        }
    )
    cols = ["customer_id", "decided_at", "channel", "group", "offer"]
    history = pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    for h in hours:  # passes in the order drawn, not sorted: reruns of earlier days happen
        as_of = START + pd.Timedelta(hours=h)
        cands = pd.DataFrame(
            {
                "customer_id": ids,
                "trigger": "t",
                "kind": "inactive",
                "campaign": "wake_up",
                "channel": channels,
                "offers": [("coupon_10pct", "points_x2")] * 4,
                "episode": [f"e{h}"] * 4,
                "priority": 0,
            }
        )
        out = apply_policy(cfg, as_of, cands, scores, tables, history)
        new = out.decisions[cols]
        if new.empty:  # every customer in quiet hours at this pass
            continue
        history = new if history.empty else pd.concat([history, new], ignore_index=True)
    sent = history.loc[(history["group"] == "treatment") & (history["offer"] != "none")]
    for cid, part in sent.groupby("customer_id"):
        times = list(pd.to_datetime(part["decided_at"], utc=True))
        assert _max_in_window(times, pd.Timedelta(days=all_days)) <= all_max
        for _, chp in part.groupby("channel"):
            assert (
                _max_in_window(list(pd.to_datetime(chp["decided_at"], utc=True)), pd.Timedelta(days=days))
                <= per
            )
        zone = ZoneInfo(zones[ids.index(cid)])
        for t in times:  # independently: the local wall-clock hour, from the standard library
            local = datetime.fromtimestamp(t.timestamp(), tz=zone)
            assert 7 <= local.hour < 22, (cid, t, local)


def _consent_at(tables: dict[str, pd.DataFrame], cid: str, channel: str, at: pd.Timestamp) -> bool:
    """Consent the slow obvious way: the last update at or before `at`, else the customer's flag."""
    upd = tables["consent_updates"]
    upd = upd.loc[(upd["customer_id"] == cid) & (upd["channel"] == channel) & (upd["changed_at"] <= at)]
    if len(upd):
        return bool(upd.sort_values("changed_at", kind="stable")["consent"].iloc[-1])
    cust = tables["customers"].set_index("customer_id")
    return bool(cust.loc[cid, f"consent_{channel}"])


@settings(SETTINGS, max_examples=8)
@given(
    seed=st.integers(0, 10_000),
    forget_share=st.floats(0.0, 0.3),
    days=st.lists(st.integers(0, 20), min_size=1, max_size=3),
)
def test_opted_out_and_forgotten_customers_never_reach_the_sink(seed, forget_share, days) -> None:
    shop = make_shop(120, seed)
    rng = np.random.default_rng(seed)
    ids = list(shop["customers"]["customer_id"])
    forgotten = [c for c in ids if rng.random() < forget_share]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_for(Path(tmp))
        run_pass(cfg, AS_OF - pd.Timedelta(days=30), shop, FakeScoreClient())
        for c in forgotten:
            forget(cfg, c, AS_OF)
        client = FakeScoreClient()
        for d in days:
            run_pass(cfg, AS_OF + pd.Timedelta(days=d), shop, client)
        assert not set(forgotten) & set(client.scored)
        lines = (
            [json.loads(x) for x in sink_path(cfg).read_bytes().splitlines()]
            if sink_path(cfg).exists()
            else []
        )
        for m in lines:
            assert m["customer_id"] not in forgotten
            if m["customer_id"].startswith("forgotten-"):
                continue
            assert _consent_at(shop, m["customer_id"], m["channel"], pd.Timestamp(m["decided_at"])), m


@settings(SETTINGS, max_examples=12)
@given(salt=st.text(min_size=1, max_size=12), share=st.sampled_from([0.02, 0.05, 0.1, 0.2]))
def test_holdout_is_deterministic_and_its_share_passes_a_chi_square_test(salt, share) -> None:
    ids = [f"cust-{i}" for i in range(20_000)]
    h = in_holdout(ids, share, salt)
    perm = np.random.default_rng(0).permutation(len(ids))
    assert (in_holdout([ids[i] for i in perm], share, salt) == h[perm]).all()  # order and batch independent
    n = len(ids)
    observed = [h.sum(), n - h.sum()]
    assert stats.chisquare(observed, [n * share, n * (1 - share)]).pvalue > 1e-3
    # the per-campaign control hash is independent of the holdout hash (2x2 chi-square of independence)
    c = in_control(ids, ["wake_up"] * n, [0.5] * n, salt)
    table = [[(h & c).sum(), (h & ~c).sum()], [(~h & c).sum(), (~h & ~c).sum()]]
    assert stats.chi2_contingency(table).pvalue > 1e-3


@settings(SETTINGS, max_examples=6)
@given(seed=st.integers(0, 10_000), offsets=st.lists(st.integers(0, 15), min_size=1, max_size=3))
def test_rerunning_any_earlier_pass_changes_nothing(seed, offsets) -> None:
    shop = make_shop(100, seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_for(Path(tmp))
        for o in offsets:
            run_pass(cfg, AS_OF + pd.Timedelta(days=o), shop, FakeScoreClient())
        eng = dl.engine_for(cfg.decision_log_url)
        with eng.connect() as conn:
            before = (dl.read_decisions(conn), dl.read_outbox(conn))
        sink = sink_path(cfg).read_bytes() if sink_path(cfg).exists() else b""
        for o in offsets:  # the same passes again, in the same order
            again = run_pass(cfg, AS_OF + pd.Timedelta(days=o), shop, FakeScoreClient())
            assert len(again.decisions) == 0 and again.sent == 0
        with eng.connect() as conn:
            pd.testing.assert_frame_equal(before[0], dl.read_decisions(conn))
            pd.testing.assert_frame_equal(before[1], dl.read_outbox(conn))
        eng.dispose()
        assert (sink_path(cfg).read_bytes() if sink_path(cfg).exists() else b"") == sink
