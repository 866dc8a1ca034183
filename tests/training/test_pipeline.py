"""The pipeline end to end on the small shop: quality bars, tracking, registry bundle, reasons, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import small_cfg

from rebuy.errors import DataError
from training.pipeline import train
from training.reasons import top_reasons
from training.registry import list_models, load_champion
from training.specs import get_spec

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".pt", ".sav")


@pytest.mark.parametrize("name", ["churn", "repurchase"])
def test_model_auc_reaches_95_percent_of_the_observable_ceiling(trained_models, small_shop_ceilings, name):
    from training.metrics import roc_auc
    from training.yardstick import OBSERVABLE

    _cfg, runs = trained_models
    res = runs[name].result
    ceiling = roc_auc(
        res.test_y, small_shop_ceilings.predict(res.spec, res.test_keys, res.test_X)[OBSERVABLE]
    )
    oracle = res.quality["oracle"]["roc_auc"]
    # the ceiling learns the truth from the features: above the model, below what the hidden state gives
    assert res.metrics["roc_auc"] - 0.01 <= ceiling <= oracle, (res.metrics["roc_auc"], ceiling, oracle)
    assert res.metrics["roc_auc"] >= 0.95 * ceiling, (res.metrics["roc_auc"], ceiling, oracle)


@pytest.mark.parametrize("name", ["churn", "repurchase"])
def test_model_beats_recency_with_a_bootstrap_interval_above_zero(trained_models, name):
    _cfg, runs = trained_models
    rec = runs[name].result.quality["recency"]
    assert rec["auc_gain_ci_low"] > 0, rec
    assert runs[name].result.metrics["roc_auc"] > rec["roc_auc"]


@pytest.mark.parametrize("name", ["churn", "repurchase"])
def test_probabilities_are_calibrated_on_the_test_cutoffs(trained_models, name):
    _cfg, runs = trained_models
    res = runs[name].result
    assert res.metrics["ece"] <= 0.03
    assert res.calibrator["method"] in {"isotonic", "platt"}
    # fitted on every validation row: the early-stopping half (valid_rows) and the other customers' half
    sel = res.calibrator["selection"]
    assert sel["rows"] == res.split_info["calib_rows"] > res.split_info["valid_rows"]
    assert sel["folds"] == 2
    losses = sel["cross_fitted_log_loss"]
    assert res.calibrator["method"] == min(losses, key=losses.get)


@pytest.mark.parametrize("name", ["churn", "repurchase"])
def test_baselines_and_oracle_are_scored_on_the_same_test_rows(trained_models, name):
    _cfg, runs = trained_models
    q = runs[name].result.quality
    assert {"model", "recency", "bgnbd", "oracle"} <= set(q)
    rates = {who: m["positive_rate"] for who, m in q.items()}
    assert len(set(rates.values())) == 1  # same rows -> same positive rate
    # the oracle knows the hidden state: nothing computed from the history should beat it
    assert q["oracle"]["roc_auc"] >= q["model"]["roc_auc"]


def test_regressions_report_mae_and_rank_correlation(trained_models):
    _cfg, runs = trained_models
    for name in ("days_to_next", "value"):
        m = runs[name].result.metrics
        assert m["mae"] > 0 and m["spearman"] > 0.2
    assert "oracle_spearman" in runs["value"].result.metrics
    # capped, censored duration: no label above the cap
    assert runs["days_to_next"].result.test_y.max() <= get_spec(_cfg, "days_to_next").cap_days


def test_everything_is_tracked_in_mlflow(trained_models):
    from mlflow import MlflowClient

    cfg, runs = trained_models
    c = MlflowClient(tracking_uri=cfg.mlflow_uri)
    run = c.get_run(runs["churn"].outcome.run_id)
    for key in (
        "roc_auc",
        "pr_auc",
        "brier",
        "log_loss",
        "ece",
        "lift_at_10",
        "recency_roc_auc",
        "bgnbd_roc_auc",
        "oracle_roc_auc",
    ):
        assert key in run.data.metrics, key
    assert run.data.tags["feature_service"] == "churn_v2"
    assert len(run.data.tags["data_digest"]) == 64
    assert "mae" in c.get_run(runs["value"].outcome.run_id).data.metrics
    arts = {
        a.path for folder in ("plots", "info", "reference") for a in c.list_artifacts(run.info.run_id, folder)
    }
    assert {
        "plots/calibration_curve.png",
        "plots/gain_lift.png",
        "plots/feature_importance.png",
        "plots/shap_summary.png",
        "info/optuna_study.json",
        "info/features.json",
        "reference/reference.parquet",
    } <= arts
    local = c.download_artifacts(
        run.info.run_id, "reference/reference.parquet", str(cfg.paths.data_dir / "dl")
    )
    ref = pd.read_parquet(local)
    assert list(ref.columns[2:]) == runs["churn"].result.feature_names and len(ref) > 100


def test_first_versions_become_champion_and_challenger(trained_models):
    cfg, runs = trained_models
    rows = {r["model"]: r for r in list_models(cfg)}
    assert rows["rebuy-churn"]["aliases"] == "challenger,champion"
    assert all(run.outcome.promoted for run in runs.values())


def test_champion_bundle_predicts_what_training_evaluated_and_gives_reasons(trained_models):
    cfg, runs = trained_models
    res = runs["churn"].result
    bundle = load_champion(cfg, "churn")
    assert bundle.feature_names == res.feature_names and bundle.feature_service == "churn_v2"
    np.testing.assert_allclose(bundle.predict(res.test_X), res.test_pred, rtol=1e-9)
    names, contrib = top_reasons(bundle, res.test_X[:50], k=3)
    assert names.shape == contrib.shape == (50, 3)
    full = bundle.contributions(res.test_X[:50])
    raw = bundle.booster.predict(res.test_X[:50], raw_score=True)
    np.testing.assert_allclose(full.sum(axis=1), raw, rtol=1e-9)  # contributions add up to the score
    assert (np.abs(contrib[:, 0]) >= np.abs(contrib[:, 1])).all()
    i = int(np.argmax(np.abs(full[0, :-1])))
    assert names[0, 0] == res.feature_names[i]


def test_each_model_is_tested_on_the_latest_cutoffs_its_horizon_allows(trained_models, small_shop):
    from training.specs import default_specs

    cfg, runs = trained_models
    end = pd.Timestamp(small_shop.sim.now).tz_convert("UTC")
    specs = default_specs(cfg)
    step = pd.Timedelta(days=cfg.features.cutoff_step_days)
    for name, run in runs.items():
        mature = run.result.test_keys["cutoff"].max() + pd.Timedelta(days=specs[name].maturity_days)
        # the label window is over by the end of the history, and one lattice step later it would not be
        assert mature <= end < mature + step, name
    start = {name: pd.Timestamp(run.result.split_info["test_start"]) for name, run in runs.items()}
    assert start["repurchase"] > start["churn"] > start["value"]
    # the censored days-to-next label needs its 180-day cap to have passed, like the value label
    assert specs["days_to_next"].maturity_days == specs["value"].maturity_days == cfg.horizons.value_days


def test_value_cut_travels_with_the_value_model_and_segments_use_it(trained_models):
    from training.segments import segment, value_cut, value_cut_from_meta

    cfg, runs = trained_models
    res = runs["value"].result
    meta = load_champion(cfg, "value").meta
    assert meta["value_cut"] == pytest.approx(value_cut(res.test_pred, cfg.training.segments))
    assert meta["value_cut_quantile"] == cfg.training.segments.high_value_quantile
    cut = value_cut_from_meta(meta, cfg.training.segments)
    assert cut == meta["value_cut"]
    # about the configured share of test rows is at or above the cut; with low churn they are high_value
    share = float(np.mean(res.test_pred >= cut))
    assert abs(share - (1 - cfg.training.segments.high_value_quantile)) < 0.02
    seg = segment(np.zeros(len(res.test_pred)), res.test_pred, cut, cfg.training.segments)
    assert (seg == "high_value").sum() == (res.test_pred >= cut).sum() > 0
    assert "value_cut" not in load_champion(cfg, "churn").meta  # only the value spec sets it


def test_no_artifact_is_a_pickle(trained_models):
    cfg, _runs = trained_models
    files = [p for p in cfg.paths.mlflow_dir.rglob("*") if p.is_file()]
    assert any(p.name == "model.lgb" for p in files)
    for p in files:
        assert not p.name.endswith(PICKLE_SUFFIXES), p
        head = p.read_bytes()[:2]
        assert not (len(head) == 2 and head[0] == 0x80 and head[1] <= 5), f"{p} starts like a pickle"
    for model_file in cfg.paths.mlflow_dir.rglob("model.lgb"):
        assert model_file.read_text()[:4] == "tree"  # LightGBM native text
    import yaml

    for mlmodel in cfg.paths.mlflow_dir.rglob("MLmodel"):
        flavor = yaml.safe_load(mlmodel.read_text())["flavors"]["lightgbm"]
        # a Booster is written by LightGBM itself; the sklearn wrappers would be pickled/skops'd instead
        assert flavor["data"] == "model.lgb" and flavor["model_class"] == "lightgbm.basic.Booster"


def test_orders_only_data_trains_and_reports_the_same_table(tmp_path, small_shop):
    from conftest import shop_training_sets

    from rebuy.contract import empty
    from training.run import known_services, quality_rows, simulator_oracle, train_specs

    cfg = small_cfg(tmp_path, trials=3)
    shop = type(small_shop)(small_shop.sim, {**small_shop.tables, "events": empty("events")})
    sets, grids = shop_training_sets(cfg, shop, models=("churn",))
    runs = train_specs(
        cfg,
        ["churn"],
        sets,
        known_services(),
        oracle=simulator_oracle(shop.sim),
        show_progress=False,
        register=False,
        grids=grids,
    )
    scorers = {r["scorer"] for r in quality_rows(runs)}
    assert scorers == {"model", "recency", "bgnbd", "oracle"}
    res = runs["churn"]
    assert res.metrics["roc_auc"] > res.quality["recency"]["roc_auc"]


def test_bad_training_sets_are_refused_with_a_clear_error(synth_shop, tmp_path):
    from synth import FEATURES

    df, _o, _ = synth_shop
    cfg = small_cfg(tmp_path)
    spec = get_spec(cfg, "churn")
    with pytest.raises(DataError, match="lacks required columns"):
        train(cfg, spec, df.drop(columns=["churn"]), feature_names=FEATURES)
    with pytest.raises(DataError, match="lacks features"):
        train(cfg, spec, df, feature_names=[*FEATURES, "views_24h"])
    bad = df.assign(region="north")
    with pytest.raises(DataError, match="non-numeric"):
        train(cfg, spec, bad, feature_names=[*FEATURES, "region"])
    with pytest.raises(DataError, match="other than 0/1"):
        train(cfg, spec, df.assign(churn=df["churn"] * 2), feature_names=FEATURES)
    assert not (tmp_path / "optuna").exists()  # nothing written before the checks pass


def test_reference_sample_json_safe_summary(trained_models):
    _cfg, runs = trained_models
    json.dumps(runs["churn"].result.tuning)  # the study summary is logged as JSON
    assert runs["churn"].result.tuning["n_trials"] >= 1
