"""The champion gate, manual promote, rollback, and resuming the Optuna study — through MLflow for real."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import small_cfg
from synth import FEATURES, make_shop

from rebuy.errors import RebuyError
from training.pipeline import train
from training.registry import alias_version, client, list_models, promote, rollback
from training.specs import get_spec
from training.tracking import log_run
from training.tuning import tune


@pytest.fixture(scope="module")
def shop():
    return make_shop(1500, seed=5)[0]


def worse(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """Same rows and features, but labels shuffled before the test period: a model that learned nothing."""
    cutoffs = sorted(df["cutoff"].unique())
    before_test = df["cutoff"] < cutoffs[-2]
    out = df.copy()
    rng = np.random.default_rng(0)
    out.loc[before_test, label] = rng.permutation(out.loc[before_test, label].to_numpy())
    return out


def test_gate_promotes_better_refuses_worse_and_rollback_restores(tmp_path, shop):
    cfg = small_cfg(tmp_path, trials=3)
    spec = get_spec(cfg, "churn")
    bad = train(cfg, spec, worse(shop, "churn"), feature_names=FEATURES, show_progress=False)
    good = train(cfg, spec, shop, feature_names=FEATURES, show_progress=False)
    # same population and split -> the gate compares on identical test rows
    pd.testing.assert_frame_equal(bad.test_keys, good.test_keys)
    assert good.metrics["roc_auc"] > bad.metrics["roc_auc"] + cfg.training.promotion_margin

    v1 = log_run(cfg, bad)
    assert v1.promoted and v1.reason == "no champion yet"
    v2 = log_run(cfg, good)
    assert v2.promoted and v2.champion_version == v1.version
    assert v2.champion_metric == pytest.approx(bad.metrics["roc_auc"])  # champion rescored on the same rows
    v3 = log_run(cfg, bad)
    assert not v3.promoted and "does not beat" in v3.reason
    assert alias_version(cfg, "churn", "champion") == v2.version
    assert alias_version(cfg, "churn", "challenger") == v3.version

    restored = rollback(cfg, "churn", reason="v2 misbehaves in production")
    assert restored == v1.version == alias_version(cfg, "churn", "champion")
    c = client(cfg)
    assert "v2 misbehaves" in c.get_model_version("rebuy-churn", v1.version).tags["champion_reason"]

    promote(cfg, "rebuy-churn", v3.version, reason="manual override for a test")
    assert alias_version(cfg, "churn", "champion") == v3.version
    history = c.get_registered_model("rebuy-churn").tags["champion_history"]
    assert history.count('"version"') == 4 and "manual override" in history  # every move recorded
    rows = [r for r in list_models(cfg) if r["model"] == "rebuy-churn"]
    assert [r["version"] for r in rows] == [3, 2, 1] and rows[0]["aliases"] == "challenger,champion"
    with pytest.raises(RebuyError, match="needs a reason"):
        promote(cfg, "churn", v2.version, reason=" ")


def test_rollback_without_history_is_a_clear_error(tmp_path):
    with pytest.raises(RebuyError, match="no @champion"):
        rollback(small_cfg(tmp_path), "value", reason="x")


def test_a_rerun_resumes_the_persistent_study(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 3))
    y = (X[:, 0] + rng.normal(size=800) > 0).astype(float)
    spec = get_spec(small_cfg(tmp_path), "churn")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(
        storage=storage,
        study_name="churn-test",
        early_stopping=10,
        seed=1,
        show_progress=False,
    )
    first = tune(spec, X[:500], y[:500], X[500:], y[500:], ["a", "b", "c"], trials=3, **kw)
    assert first.summary["resumed_from"] == 0 and first.summary["n_trials"] == 3
    second = tune(spec, X[:500], y[:500], X[500:], y[500:], ["a", "b", "c"], trials=5, **kw)
    assert second.summary["resumed_from"] == 3 and second.summary["n_trials"] == 5  # 2 new, not 5
    again = tune(spec, X[:500], y[:500], X[500:], y[500:], ["a", "b", "c"], trials=5, **kw)
    assert again.summary["n_trials"] == 5  # budget already met: nothing new
    assert len(optuna.load_study(study_name="churn-test", storage=storage).trials) == 5
