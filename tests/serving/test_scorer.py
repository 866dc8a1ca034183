"""Scorer logic on tiny boosters and hand-written rows: the code path both the service and `rebuy score` use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuy.contract import OFFERS
from serving.schemas import CustomerScore, OfferName
from serving.scorer import RequestError, Scorer, StartupError, greedy_best
from tests.support.synthetic import SyntheticModel, synthetic_scorer
from training.policy import greedy, greedy_batch

NOW = pd.Timestamp("2025-07-01T00:00:00Z")  # synthetic features were stored at 2025-06-30T00:00Z


@pytest.fixture(scope="module")
def synth() -> tuple[Scorer, pd.DataFrame]:
    return synthetic_scorer(n_customers=600, seed=3, rounds=15)


def test_schema_offer_names_are_the_contract_offers() -> None:
    assert set(OfferName.__args__) == set(OFFERS)  # type: ignore[attr-defined]


def test_greedy_best_hand_rows() -> None:
    offers = ("none", "free_shipping", "coupon_10pct")
    margins = np.array(
        [
            [0.0, 1.0, 2.0],  # coupon pays most
            [0.0, -1.0, -0.5],  # nothing pays -> none
            [0.0, 0.0, 0.0],  # ties at 0 -> none
            [0.0, 3.0, 3.0],  # tie between offers -> the one that sorts first (coupon_10pct)
            [0.0, np.nan, 0.1],  # non-finite never wins
        ]
    )
    assert greedy_best(margins, offers).tolist() == [
        "coupon_10pct",
        "none",
        "none",
        "coupon_10pct",
        "coupon_10pct",
    ]
    assert greedy_best(np.zeros((2, 1)), ("none",)).tolist() == ["none", "none"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=20))
def test_greedy_best_equals_the_orchestrators_greedy(rows: list[list[float]]) -> None:
    offers = ("points_x2", "care_message", "coupon_10pct")
    m = np.array(rows)
    ours = greedy_best(m, offers).tolist()
    assert ours == greedy_batch(pd.DataFrame(m, columns=list(offers))).tolist()
    assert ours == [greedy(dict(zip(offers, r, strict=True)), offers) for r in rows]


def test_score_ids_equals_direct_model_predictions(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, table = synth
    ids = ["c000000", "c000005", "c000599"]
    batch = scorer.score_ids(ids, NOW)
    for name, got in [
        ("churn", batch.churn),
        ("repurchase", batch.repurchase),
        ("days_to_next", batch.days_to_next),
        ("value", batch.value),
    ]:
        m = scorer.models[name]
        X = table.loc[ids, list(m.feature_names)].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(got, m.predict(X), rtol=0, atol=1e-12)
    assert batch.cold_start.tolist() == [False, False, False]
    np.testing.assert_allclose(batch.feature_age, [86400.0] * 3)  # stored a day before NOW


def test_unknown_customer_is_cold_start_scored_on_missing_features(
    synth: tuple[Scorer, pd.DataFrame],
) -> None:
    scorer, _ = synth
    batch = scorer.score_ids(["c000001", "nobody"], NOW)
    assert batch.cold_start.tolist() == [False, True]
    assert np.isnan(batch.feature_age[1])
    churn = scorer.models["churn"]
    expected = churn.predict(np.full((1, len(churn.feature_names)), np.nan))[0]
    assert batch.churn[1] == pytest.approx(expected, abs=1e-12)
    rec = batch.records()[1]
    assert rec["cold_start"] is True and rec["feature_age_seconds"] is None
    assert all(r["value"] is None for r in rec["reasons"])  # every feature was missing


def test_rows_and_ids_give_identical_scores(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, table = synth
    ids = ["c000010", "c000011"]
    rows = [
        {k: (None if np.isnan(v) else float(v)) for k, v in table.loc[c, list(scorer.feature_names)].items()}
        for c in ids
    ]
    a, b = scorer.score_ids(ids, NOW), scorer.score_rows(rows, ids)
    for x, y in [
        (a.churn, b.churn),
        (a.value, b.value),
        (a.margin, b.margin),
        (a.days_to_next, b.days_to_next),
    ]:
        np.testing.assert_array_equal(x, y)
    assert [r["reasons"] for r in a.records()] == [r["reasons"] for r in b.records()]
    assert np.isnan(b.feature_age).all()  # freshness is unknown for caller-given rows


def test_models_see_their_own_column_order(synth: tuple[Scorer, pd.DataFrame]) -> None:
    """A model trained with a permuted feature order still gets the right columns from the service matrix."""
    scorer, _ = synth
    churn: SyntheticModel = scorer.models["churn"]  # type: ignore[assignment]
    perm = list(reversed(churn.feature_names))

    class Reversed:
        feature_names, feature_service, version = perm, churn.feature_service, churn.version

        def predict(self, X: np.ndarray) -> np.ndarray:
            return churn.predict(X[:, ::-1])

        def contributions(self, X: np.ndarray) -> np.ndarray:
            c = churn.contributions(X[:, ::-1])
            return np.column_stack([c[:, :-1][:, ::-1], c[:, -1]])

    other = replace(scorer, models={**scorer.models, "churn": Reversed()})
    ids = ["c000020", "c000021", "c000022"]
    np.testing.assert_array_equal(other.score_ids(ids, NOW).churn, scorer.score_ids(ids, NOW).churn)
    assert other.score_ids(ids, NOW).reasons == scorer.score_ids(ids, NOW).reasons


def test_offers_restrict_estimates_and_best(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, _ = synth
    full = scorer.score_ids(["c000030", "c000031"], NOW)
    only = scorer.score_ids(["c000030", "c000031"], NOW, offers=["none", "care_message"])
    assert only.offers == ("none", "care_message")
    j = full.offers.index("care_message")
    np.testing.assert_array_equal(only.margin[:, 1], full.margin[:, j])
    assert set(only.best_offer) <= {"none", "care_message"}
    np.testing.assert_array_equal(only.margin[:, 0], 0.0)
    with pytest.raises(RequestError, match="offers"):
        scorer.score_ids(["c000030"], NOW, offers=["wake_up_gift"])  # not in this catalogue


def test_unknown_feature_names_are_refused(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, _ = synth
    with pytest.raises(RequestError, match=r"rows\[1\].features.*'nope'"):
        scorer.score_rows([{"orders_90d": 1.0}, {"nope": 2.0}])


def test_records_follow_the_http_contract(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, _ = synth
    recs = scorer.score_ids(["c000040", "zzz"], NOW).records()
    for r in recs:
        CustomerScore.model_validate(r)
        assert len(r["reasons"]) == 6 and {x["model"] for x in r["reasons"]} == {"churn", "repurchase"}
        contribs = [abs(x["contribution"]) for x in r["reasons"] if x["model"] == "churn"]
        assert contribs == sorted(contribs, reverse=True)
    assert recs[0]["model_versions"] == {
        "churn": "1",
        "days_to_next": "1",
        "offer": "1",
        "repurchase": "1",
        "value": "1",
    }


def test_reason_contributions_add_up_to_the_raw_score(synth: tuple[Scorer, pd.DataFrame]) -> None:
    """With k = every feature, the contributions + bias are the booster's raw score (TreeSHAP is exact)."""
    scorer, table = synth
    churn = scorer.models["churn"]
    wide = replace(scorer, reasons_k=len(churn.feature_names), explained=("churn",))
    batch = wide.score_ids(["c000050"], NOW)
    X = table.loc[["c000050"], list(churn.feature_names)].to_numpy(dtype=np.float64)
    bias = churn.contributions(X)[0, -1]
    raw = churn.booster.predict(X, raw_score=True, num_threads=1)[0]
    assert sum(c for *_, c in batch.reasons[0]) + bias == pytest.approx(raw, abs=1e-9)


def test_missing_champion_or_reader_is_a_startup_error(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, _ = synth
    with pytest.raises(StartupError, match="value"):
        replace(scorer, models={k: v for k, v in scorer.models.items() if k != "value"})
    with pytest.raises(StartupError, match="churn_v1"):
        replace(scorer, readers={k: v for k, v in scorer.readers.items() if k != "churn_v1"})


def test_to_frame_has_one_flat_row_per_customer(synth: tuple[Scorer, pd.DataFrame]) -> None:
    scorer, _ = synth
    df = scorer.score_ids(["c000060", "c000061", "nobody"], NOW).to_frame(NOW)
    assert len(df) == 3 and df["customer_id"].tolist() == ["c000060", "c000061", "nobody"]
    assert df["cold_start"].tolist() == [False, False, True]
    for o in scorer.catalogue:
        assert f"offer_{o}_incremental_margin" in df.columns


class _FixedContrib:
    """A model whose contributions are given (bias last), to pin the one-row ranking by hand."""

    def __init__(self, contrib: list[float]) -> None:
        self.contrib = np.array([contrib])
        self.feature_names = [f"f{i}" for i in range(len(contrib) - 1)]

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.repeat(self.contrib, len(X), axis=0)


def test_one_row_reasons_rank_like_top_reasons_ties_included() -> None:
    """The service's one-customer reasons (plain Python) equal training.reasons.top_reasons on the same row."""
    from serving.scorer import bundle_reasons

    # |contribution|: f1 = f3 = 0.5 (tie: the first column wins), then f0 = -0.25, f2 = 0.1; bias 9 is ignored
    model = _FixedContrib([-0.25, 0.5, 0.1, -0.5, 9.0])
    X = np.array([[1.0, np.nan, 3.0, 4.0]])
    assert bundle_reasons(model, X, 3) == [[("f1", None, 0.5), ("f3", 4.0, -0.5), ("f0", 1.0, -0.25)]]
    assert bundle_reasons(model, X, 10)[0][-1] == ("f2", 3.0, 0.1)  # k larger than the features: all of them
    # two rows take top_reasons (numpy); each row must read the same as alone
    assert bundle_reasons(model, np.vstack([X, X]), 3) == bundle_reasons(model, X, 3) * 2
    nan = _FixedContrib([np.nan, 0.5, 0.1, -0.5, 0.0])  # NaN: the numpy ranking decides (NaN last)
    assert [f for f, _, _ in bundle_reasons(nan, X, 4)[0]] == ["f1", "f3", "f2", "f0"]
