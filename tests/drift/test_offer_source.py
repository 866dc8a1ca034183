"""The offer model under drift monitoring: current rows from randomized decisions (by hand), and `rebuy drift`
/ `rebuy retrain --if-drift` against a registered offer champion whose run logged its reference sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import drift_sources
from pipelines.drift_sources import MARGIN_PREFIX, offer_current_rows

AS_OF = pd.Timestamp("2025-03-15 10:00", tz="UTC")
UNIFORM = {"none": 1 / 3, "A": 1 / 3, "B": 1 / 3}


def test_current_rows_are_the_window_s_randomized_decisions_with_served_margins() -> None:
    at = pd.to_datetime(
        ["2025-03-14 10:00", "2025-03-10 09:30", "2025-03-01 10:00", "2025-03-12 10:00", "2025-03-15 11:00"],
        utc=True,
    )
    decisions = pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3", "d4", "d5"],
            "customer_id": ["a", "b", "c", "d", "e"],
            "decided_at": at,
            # d4 was forced (holdout: only none had a chance) -> not a row the offer model learns from
            "distribution": [UNIFORM, UNIFORM, UNIFORM, {"none": 1.0}, UNIFORM],
            "scores": [
                {"offer_estimates": {"none": 0.0, "A": 1.5, "B": -0.25}},
                {"offer_estimates": {"A": 2.0, "B": 0.5}},
                {"offer_estimates": {"A": 9.0, "B": 9.0}},
                {"offer_estimates": {"A": 9.0, "B": 9.0}},
                {"offer_estimates": {"A": 9.0, "B": 9.0}},
            ],
            "model_versions": [
                {"offer": "3"},
                {"offer": "2"},
                {"offer": "3"},
                {"offer": "3"},
                {"offer": "3"},
            ],
        }
    )
    rows = offer_current_rows(decisions, AS_OF, 14, "3", ["none", "A", "B"])
    # 14 days back from Mar 15 10:00: d3 (Mar 1) is too old, d5 is after as-of, d4 not randomized
    assert list(rows["decision_id"]) == ["d1", "d2"]
    assert list(rows["cutoff"]) == list(pd.to_datetime(["2025-03-14", "2025-03-10"], utc=True))
    assert list(rows.columns) == ["decision_id", "customer_id", "cutoff", "margin__A", "margin__B"]
    # v3 served d1: its estimates are taken; d2 was served by v2: left to the champion (NaN)
    assert rows.loc[0, "margin__A"] == 1.5 and rows.loc[0, "margin__B"] == -0.25
    assert rows.loc[1, ["margin__A", "margin__B"]].isna().all()
    assert offer_current_rows(decisions.iloc[:0], AS_OF, 14, "3", ["A"]).empty


# --- against a registered champion --------------------------------------------------------------------------


def _features(ids: np.ndarray, shift: float = 0.0) -> pd.DataFrame:
    """x1 ~ U(0, 1), x2 ~ N(shift, 1), drawn per customer id (stable whatever the call order)."""
    x1 = np.array([np.random.default_rng([int(i[1:]), 1]).random() for i in ids])
    x2 = np.array([np.random.default_rng([int(i[1:]), 2]).normal(shift, 1.0) for i in ids])
    return pd.DataFrame({"x1": x1, "x2": x2})


def _register_offer_champion(cfg, n: int = 3000):  # type: ignore[no-untyped-def]
    """Fit an offer model on a randomized campaign with known effects and register it as @champion, logging
    `reference/reference.parquet` (KEYS + features) in its run as the offer training does."""
    import tempfile

    import mlflow

    from tests.offer.synth import make_campaign
    from training.offer import REGISTERED_NAME, OfferModel
    from training.registry import CHAMPION, client, experiment_id
    from training.uplift import fit_uplift

    d = make_campaign(n, 8)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    X = _features(ids)  # the campaign's own x1, x2 law, drawn per id
    out = d["outcomes"]
    conv = fit_uplift(X, d["arm"], out[["conversion"]], "none", learner="t")
    marg = fit_uplift(
        X, d["arm"], (out[["spend"]] * 0.35).rename(columns={"spend": "margin"}), "none", learner="t"
    )
    model = OfferModel(conv, marg)
    days = pd.date_range("2025-02-01", periods=28, freq="D", tz="UTC")
    reference = pd.concat(
        [pd.DataFrame({"customer_id": ids, "cutoff": days[np.arange(n) % 28]}), X], axis=1
    ).sample(2000, random_state=0)
    cfg.paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.mlflow_uri)
    mlflow.set_registry_uri(cfg.mlflow_uri)
    mlflow.set_experiment(experiment_id=experiment_id(cfg, "rebuy-offer"))
    with tempfile.TemporaryDirectory() as tmp_s, mlflow.start_run(run_name="offer") as run:
        tmp = Path(tmp_s)
        reference.to_parquet(tmp / "reference.parquet", index=False)
        mlflow.log_artifact(str(tmp / "reference.parquet"), artifact_path="reference")
        model.save(tmp / "offer_model")
        mlflow.log_artifacts(str(tmp / "offer_model"), artifact_path="offer_model")
        source = f"{run.info.artifact_uri}/offer_model"
        run_id = run.info.run_id
    c = client(cfg)
    c.create_registered_model(REGISTERED_NAME)
    version = str(c.create_model_version(REGISTERED_NAME, source, run_id=run_id).version)
    c.set_registered_model_alias(REGISTERED_NAME, CHAMPION, version)
    return model, version


def _decisions(n: int, version: str, model, shift: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """n randomized decisions at 10:00 over the 14 days before AS_OF; the first half served by `version`
    (estimates as the champion made them), the rest by an older version. Also their features."""
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    days = pd.date_range("2025-03-02 10:00", periods=14, freq="D", tz="UTC")
    X = _features(ids, shift)
    est = drift_sources.offer_margins(model, X)
    served = [
        {"offer_estimates": {o: float(est.loc[i, f"{MARGIN_PREFIX}{o}"]) for o in ("A", "B")}}
        for i in range(n)
    ]
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "customer_id": ids,
            "decided_at": days[np.arange(n) % 14],
            "distribution": [UNIFORM] * n,
            "scores": served,
            "model_versions": [{"offer": version if i < n // 2 else "0"} for i in range(n)],
        }
    )
    feats = pd.concat([pd.DataFrame({"customer_id": ids}), X], axis=1)
    return decisions, feats


@pytest.mark.slow
def test_drift_and_retrain_monitor_the_offer_champion(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from pipelines.drift import read_summaries, run_drift, run_retrain
    from rebuy.config import load_config

    cfg = load_config(None, data_dir=tmp_path)
    model, version = _register_offer_champion(cfg)

    def use(decisions: pd.DataFrame, feats: pd.DataFrame) -> None:
        monkeypatch.setattr(drift_sources, "_decision_log", lambda cfg: decisions)
        monkeypatch.setattr(
            drift_sources, "_offer_features", lambda cfg, pairs: pairs.merge(feats, on="customer_id")
        )

    use(*_decisions(2000, version, model))
    out = run_drift(cfg, AS_OF, ["offer"], load_source=drift_sources.load_model_source, progress=False).iloc[
        0
    ]
    assert out["status"] == "ok", out["line"]
    drift_dir = cfg.paths.reports_dir / "drift"
    s = read_summaries(drift_dir)[-1]
    assert s["model"] == "offer" and s["model_version"] == version
    cols = {c["column"]: c for c in s["columns"]}
    assert cols["margin__A"]["role"] == "prediction" and cols["margin__B"]["role"] == "prediction"
    assert cols["x2"]["role"] == "feature"
    assert any("1000 rows as served by v" in n and "1000 estimated" in n for n in s["notes"])
    assert any("evaluate-policy" in n for n in s["notes"])
    page = (drift_dir / "index.html").read_text()
    assert "<h2>offer v" in page and (drift_dir / s["_dir"] / "report.html").is_file()

    # the decided-on population moved (x2 up by one standard deviation): drift on x2, and a retrain
    use(*_decisions(2000, version, model, shift=1.0))
    later = AS_OF + pd.Timedelta(hours=1)
    out = run_drift(cfg, later, ["offer"], load_source=drift_sources.load_model_source, progress=False).iloc[
        0
    ]
    assert out["status"] == "drift" and "x2" in out["line"]
    assert "x1" not in {c["column"] for c in read_summaries(drift_dir)[-1]["columns"] if c["level"] != "ok"}
    calls: list[str] = []
    run_retrain(cfg, later, ["offer"], train=lambda c, m, a: calls.append(m) or {"promoted": False})
    assert calls == ["offer"]
    record = json.loads(next((drift_dir / "retrain").glob("*.json")).read_text())
    assert record["decisions"][0]["retrain"] and "x2" in " ".join(record["decisions"][0]["reasons"])


def test_offer_not_monitored_without_a_champion_and_the_index_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.drift import run_drift
    from rebuy.config import load_config

    cfg = load_config(None, data_dir=tmp_path)
    out = run_drift(
        cfg, AS_OF, ["offer"], load_source=drift_sources.load_model_source, log_mlflow=False, progress=False
    ).iloc[0]
    assert out["status"] == "unmonitored" and "rebuy train offer" in out["line"]
    page = (cfg.paths.reports_dir / "drift" / "index.html").read_text()
    assert "not monitored" in page and "rebuy train offer" in page


def test_retraining_the_offer_model_calls_the_offer_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import training.offer
    from rebuy.config import load_config

    seen: list[pd.Timestamp] = []

    def fake_train_offer(cfg, as_of, **kw):  # type: ignore[no-untyped-def]
        seen.append(as_of)
        return {"version": "7", "promoted": True, "reason": "gate"}

    monkeypatch.setattr(training.offer, "train_offer", fake_train_offer)
    out = drift_sources.train_model(load_config(None, data_dir=tmp_path), "offer", AS_OF)
    assert seen == [AS_OF] and out["promoted"] is True
