"""Uplift learners on a small campaign whose per-customer effects are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from rebuy.errors import DataError
from tests.offer.synth import make_campaign
from training.ope import arm_effects
from training.uplift import Encoder, fit_uplift, mean_qini, roundtrip, select_learner


@pytest.fixture(scope="module")
def data() -> dict:
    return make_campaign(6000, seed=11)


@pytest.fixture(scope="module")
def heldout() -> dict:
    return make_campaign(3000, seed=12)


@pytest.mark.parametrize("learner", ["t", "x", "s"])
def test_average_effects_within_simultaneous_intervals_of_truth(data, heldout, learner) -> None:
    model = fit_uplift(data["X"], data["arm"], data["outcomes"][["conversion"]], "none", learner=learner)
    eff = model.effects_frame(model.encoder.transform(heldout["X"]), "conversion")
    # the interval half-width is that of a difference-in-means estimate on the training rows,
    # Bonferroni over the two arms
    se = arm_effects(data["outcomes"]["conversion"].to_numpy(), data["arm"], "none").set_index("arm")["se"]
    z = norm.ppf(1 - 0.05 / (2 * 2))
    for arm in ("A", "B"):
        true_ate = heldout["truth_conversion"][arm].mean()
        assert abs(eff[arm].mean() - true_ate) <= z * se[arm], (arm, eff[arm].mean(), true_ate)


def test_effects_rank_the_persuadable_first(data, heldout) -> None:
    model = fit_uplift(data["X"], data["arm"], data["outcomes"][["conversion"]], "none", learner="x")
    eff = model.effects_frame(model.encoder.transform(heldout["X"]), "conversion")
    # arm A helps exactly the customers with x1 > 0.5: its predicted effect must separate them
    helped = heldout["X"]["x1"].to_numpy() > 0.5
    assert eff["A"][helped].mean() > 0 > eff["A"][~helped].mean()
    q = mean_qini(
        model, heldout["X"], heldout["arm"], heldout["outcomes"]["conversion"].to_numpy(), "conversion"
    )
    assert q["A"] > 0


def test_selection_compares_both_learners_and_keeps_the_best(data, heldout) -> None:
    sel = select_learner(
        (data["X"], data["arm"], data["outcomes"]),
        (heldout["X"], heldout["arm"], heldout["outcomes"]),
        "none",
        "spend",
    )
    assert set(sel.scores["learner"]) == {"t", "x"}
    means = sel.scores.groupby("learner")["qini"].mean()
    assert sel.chosen == means.idxmax()
    assert sel.model.targets == ["conversion", "spend"]
    assert not sel.model.binary["spend"] and sel.model.binary["conversion"]


def test_persistence_is_lossless_and_pickle_free(data, tmp_path) -> None:
    model = fit_uplift(data["X"], data["arm"], data["outcomes"], "none", learner="x")
    path = model.save(tmp_path / "m")
    assert {p.suffix for p in path.iterdir()} == {".txt", ".json"}
    back = roundtrip(model)
    M = model.encoder.transform(data["X"].head(50))
    for arm, vals in model.predict(M).items():
        for a, b in zip(vals, back.predict(M)[arm], strict=True):
            np.testing.assert_allclose(a, b)


def test_unseen_category_and_missing_values_do_not_crash(data) -> None:
    model = fit_uplift(data["X"], data["arm"], data["outcomes"][["conversion"]], "none")
    new = pd.DataFrame({"x1": [0.9, np.nan], "x2": [0.0, 1.0], "seg": ["never-seen", None]})
    out = model.predict(model.encoder.transform(new))
    assert set(out) == {"A", "B"}
    assert all(np.isfinite(v[0]).all() for v in out.values())


def test_encoder_maps_unseen_to_missing() -> None:
    enc = Encoder.fit(pd.DataFrame({"n": [1.0, 2.0], "c": ["x", "y"]}))
    M = enc.transform(pd.DataFrame({"n": [3.0], "c": ["z"]}))
    assert M[0, 0] == 3.0 and np.isnan(M[0, 1])


def test_bad_inputs_are_refused(data) -> None:
    X, arm, y = data["X"], data["arm"], data["outcomes"][["conversion"]]
    with pytest.raises(DataError, match="control arm"):
        fit_uplift(X, arm, y, "nobody")
    tiny = arm.copy()
    tiny[:5] = "C"
    tiny[5:] = np.where(arm[5:] == "C", "none", arm[5:])
    with pytest.raises(DataError, match="fewer than"):
        fit_uplift(X, tiny, y, "none")
    bad = y.copy()
    bad.iloc[3, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        fit_uplift(X, arm, bad, "none")


def test_x_learner_reusing_t_stage_one_is_identical(data) -> None:
    y = data["outcomes"][["conversion"]]
    t = fit_uplift(data["X"], data["arm"], y, "none", learner="t")
    fresh = fit_uplift(data["X"], data["arm"], y, "none", learner="x", encoder=t.encoder)
    reused = fit_uplift(data["X"], data["arm"], y, "none", learner="x", encoder=t.encoder, reuse=t)
    assert all(reused.boosters[k] is t.boosters[k] for k in t.boosters)
    M = t.encoder.transform(data["X"].head(100))
    np.testing.assert_allclose(fresh.predict(M)["A"][0], reused.predict(M)["A"][0])
