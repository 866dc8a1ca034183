"""End to end on small frames: files, the Evidently JSON agreeing with the status, the index, MLflow, retraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import drift
from pipelines.drift import ModelSource, Roles, read_summaries, retrain_decisions, run_drift, run_retrain
from rebuy.config import Config, DriftConfig, PathsConfig

AS_OF = pd.Timestamp("2025-06-02", tz="UTC")


def _cfg(tmp_path: Path) -> Config:
    return Config(
        paths=PathsConfig(data_dir=tmp_path),
        drift=DriftConfig(
            reference_sample=1500, current_sample=1500, permutations=10, min_reference_rows=100
        ),
    )


def _frames(seed: int, shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 1500
    at = pd.Series(pd.to_datetime(["2025-05-26"] * n, utc=True))  # same weekday and season on both sides

    def frame(mu: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "at": at,
                "customer_id": [f"c{i}" for i in range(n)],
                "spend": rng.lognormal(3 + mu, 0.8, n),
                "visits": rng.poisson(3, n).astype(float),
                "region": rng.choice(["north", "south"], n),
                "prediction": rng.beta(2, 5, n),
            }
        )

    return frame(0.0), frame(shift)


ROLES = Roles(
    features=("spend", "visits", "region"), categorical=("region",), prediction="prediction", timestamp="at"
)


def _loader(shifts: dict[str, float]):
    def load(cfg: Config, model: str, as_of: pd.Timestamp) -> ModelSource:
        ref, cur = _frames(7, shifts[model])
        return ModelSource(model=model, reference=ref, current=cur, roles=ROLES, version="3")

    return load


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, pd.DataFrame]:
    cfg = _cfg(tmp_path_factory.mktemp("drift"))
    out = run_drift(
        cfg, AS_OF, ["churn", "value"], load_source=_loader({"churn": 0.0, "value": 0.5}), progress=False
    )
    return cfg, out


def test_statuses_and_files(drift_run: tuple[Config, pd.DataFrame]) -> None:
    cfg, out = drift_run
    assert dict(zip(out["model"], out["status"], strict=True)) == {"churn": "ok", "value": "drift"}
    folder = cfg.paths.reports_dir / "drift" / "value" / "20250602T000000Z"
    assert {p.name for p in folder.iterdir()} == {"report.html", "evidently.json", "summary.json"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "drift" and summary["line"].startswith("value: drift — [drift] feature spend")
    assert summary["model_version"] == "3" and summary["columns"][0]["column"] == "spend"
    assert "<html" in (folder / "report.html").read_text()[:2000].lower()


def test_evidently_json_carries_the_same_effects(drift_run: tuple[Config, pd.DataFrame]) -> None:
    cfg, _ = drift_run
    folder = cfg.paths.reports_dir / "drift" / "value" / "20250602T000000Z"
    ev = json.loads((folder / "evidently.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    ours = {c["column"]: c["effect"] for c in summary["columns"]}
    theirs = {
        m["config"]["column"]: m["value"]
        for m in ev["metrics"]
        if m["config"]["type"].endswith("ValueDrift") and m["config"].get("method") == drift.STAT_TEST_NAME
    }
    assert set(theirs) == set(ours) == {"spend", "visits", "region", "prediction"}
    for col, value in theirs.items():
        assert value == pytest.approx(ours[col])


def test_index_links_latest_report_per_model_with_status(drift_run: tuple[Config, pd.DataFrame]) -> None:
    cfg, _ = drift_run
    drift_dir = cfg.paths.reports_dir / "drift"
    page = (drift_dir / "index.html").read_text()
    assert "value/20250602T000000Z/report.html" in page and "churn/20250602T000000Z/report.html" in page
    assert "pill big drift" in page and "pill big ok" in page
    # a later run of one model becomes its latest; the older one stays in the history
    later = AS_OF + pd.Timedelta(days=7)
    run_drift(cfg, later, ["value"], load_source=_loader({"value": 0.0}), log_mlflow=False, progress=False)
    page = (drift_dir / "index.html").read_text()
    value_card = page[page.index("<h2>value") :]
    value_card = value_card[: value_card.index("</section>")]
    assert "pill big ok" in value_card and "20250609T000000Z/report.html" in value_card
    assert "20250602T000000Z/report.html" in value_card  # the history dot of the older report


def test_mlflow_run_has_status_tag_and_artifacts(drift_run: tuple[Config, pd.DataFrame]) -> None:
    from mlflow.tracking import MlflowClient

    cfg, out = drift_run
    client = MlflowClient(tracking_uri=cfg.mlflow_uri)
    run = client.get_run(out.set_index("model").loc["value", "mlflow_run"])
    assert run.data.tags["rebuy.drift_status"] == "drift" and run.data.tags["rebuy.model"] == "value"
    assert run.data.metrics["effect.spend"] > 0.3
    names = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/report.html", "drift/summary.json", "drift/evidently.json"} <= names


def test_a_failing_report_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)

    class Broken:
        def save_html(self, path: str) -> None:
            Path(path).write_text("half")
            raise OSError("disk full")

    monkeypatch.setattr(drift, "evidently_report", lambda result, cfg: Broken())
    with pytest.raises(OSError, match="disk full"):
        run_drift(
            cfg, AS_OF, ["churn"], load_source=_loader({"churn": 0.0}), log_mlflow=False, progress=False
        )
    model_dir = cfg.paths.reports_dir / "drift" / "churn"
    assert list(model_dir.iterdir()) == []
    assert read_summaries(cfg.paths.reports_dir / "drift") == []


def test_retrain_decisions_follow_the_latest_status() -> None:
    summaries = [
        {
            "model": "churn",
            "as_of": "2025-06-01T00:00:00+00:00",
            "status": "drift",
            "reasons": ["[drift] old"],
        },
        {"model": "churn", "as_of": "2025-06-08T00:00:00+00:00", "status": "ok", "reasons": []},
        {
            "model": "value",
            "as_of": "2025-06-08T00:00:00+00:00",
            "status": "drift",
            "reasons": ["[drift] spend"],
        },
        {
            "model": "repurchase",
            "as_of": "2025-06-08T00:00:00+00:00",
            "status": "warning",
            "reasons": ["[warning] x"],
        },
    ]
    d = retrain_decisions(summaries, ["churn", "value", "repurchase", "offer"], if_drift=True).set_index(
        "model"
    )
    assert d["retrain"].to_dict() == {"churn": False, "value": True, "repurchase": False, "offer": False}
    assert d.loc["value", "reasons"] == ["[drift] spend"]
    assert "latest status ok" in d.loc["churn", "reasons"][0]
    assert d.loc["offer", "reasons"] == ["no drift report yet"]
    forced = retrain_decisions(summaries, ["churn", "offer"], if_drift=False)
    assert forced["retrain"].all()


def test_run_retrain_trains_only_drifted_models_and_records_why(
    drift_run: tuple[Config, pd.DataFrame],
) -> None:
    from mlflow.tracking import MlflowClient

    cfg, _ = drift_run
    # latest statuses here: churn ok (2025-06-02), value ok (2025-06-09 from the index test) or drift
    latest = {s["model"]: s["status"] for s in read_summaries(cfg.paths.reports_dir / "drift")}
    trained: list[str] = []

    def fake_train(c: Config, model: str, as_of: pd.Timestamp) -> dict:
        trained.append(model)
        return {"promoted": False, "reason": "challenger did not beat champion"}

    when = AS_OF + pd.Timedelta(days=10)
    d = run_retrain(cfg, when, ["churn", "value"], if_drift=True, train=fake_train).set_index("model")
    assert trained == [m for m in ("churn", "value") if latest[m] == "drift"]
    record = json.loads((cfg.paths.reports_dir / "drift" / "retrain" / "20250612T000000Z.json").read_text())
    assert [r["model"] for r in record["decisions"]] == ["churn", "value"]
    assert record["decisions"][0]["retrain"] is bool(d.loc["churn", "retrain"])
    runs = MlflowClient(tracking_uri=cfg.mlflow_uri).search_runs(
        [
            MlflowClient(tracking_uri=cfg.mlflow_uri)
            .get_experiment_by_name(drift.DRIFT_EXPERIMENT)
            .experiment_id
        ],
        filter_string="attributes.run_name = 'retrain-20250612T000000Z'",
    )
    assert runs[0].data.tags["rebuy.retrain.churn"] == "skipped"


def test_index_escapes_names_and_reasons() -> None:
    from pipelines.drift import render_index

    s = {
        "model": "churn",
        "as_of": "2025-06-02T00:00:00+00:00",
        "status": "warning",
        "_dir": "churn/x",
        "reasons": ["[warning] feature <script>alert(1)</script>: effect 0.12"],
        "notes": ["a & b"],
        "reference_rows": 10,
        "current_rows": 10,
        "performance": {},
        "model_version": None,
        "columns": [{"column": "<b>x</b>", "role": "feature", "effect": 0.12, "level": "warning"}],
    }
    page = render_index([s], AS_OF)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "a &amp; b" in page and "labels not matured yet" in page


def test_matured_labels_give_a_performance_report(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    rng = np.random.default_rng(3)
    ref, cur = _frames(7, 0.0)
    # reference: the label follows the score; matured current rows: it no longer does (AUC ~0.5)
    ref["y"] = (rng.random(len(ref)) < ref["prediction"]).astype(float)
    labelled = cur.assign(y=(rng.random(len(cur)) < 0.3).astype(float))
    roles = Roles(
        features=ROLES.features,
        categorical=ROLES.categorical,
        prediction="prediction",
        target="y",
        timestamp="at",
        task="binary",
        horizon_days=7,
    )

    def load(c: Config, model: str, as_of: pd.Timestamp) -> ModelSource:
        return ModelSource(model=model, reference=ref, current=cur, roles=roles, labelled=labelled)

    out = run_drift(cfg, AS_OF, ["repurchase"], load_source=load, log_mlflow=False, progress=False)
    assert out.loc[0, "status"] == "drift"
    folder = cfg.paths.reports_dir / "drift" / "repurchase" / "20250602T000000Z"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["performance"]["reference_auc"] > 0.6 > summary["performance"]["current_auc"]
    assert summary["performance_level"] == "drift" and any("performance" in r for r in summary["reasons"])
    ev = json.loads((folder / "performance.json").read_text())
    auc = next(m["value"] for m in ev["metrics"] if m["config"]["type"].endswith("RocAuc"))
    assert auc == pytest.approx(summary["performance"]["current_auc"], abs=1e-9)
    assert "performance.html" in (cfg.paths.reports_dir / "drift" / "index.html").read_text()


def test_a_model_without_sources_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    from rebuy.errors import NoChampionError, RebuyError

    cfg = _cfg(tmp_path)
    ok_loader = _loader({"churn": 0.0})

    def load(c: Config, model: str, as_of: pd.Timestamp) -> ModelSource:
        if model == "value":
            raise NoChampionError("no @champion for rebuy-value")
        if model == "offer":
            raise RebuyError("rebuy-offer v3 has no reference sample logged")
        return ok_loader(c, model, as_of)

    out = run_drift(
        cfg, AS_OF, ["value", "offer", "churn"], load_source=load, log_mlflow=False, progress=False
    )
    # no champion yet is a normal state; a champion whose sources are broken is an error
    assert out["status"].tolist() == ["unmonitored", "error", "ok"]
    assert "no @champion for rebuy-value" in out.loc[0, "line"]
    assert "no reference sample" in out.loc[1, "line"]
    assert [s["model"] for s in read_summaries(cfg.paths.reports_dir / "drift")] == ["churn"]


def test_a_feature_empty_in_the_served_rows_still_gives_a_report(tmp_path: Path) -> None:
    # e.g. an event feature no served customer had: Evidently refuses such a column, rebuy reports anyway
    cfg = _cfg(tmp_path)
    ref, cur = _frames(7, 0.0)
    cur["visits"] = np.nan

    def load(c: Config, model: str, as_of: pd.Timestamp) -> ModelSource:
        return ModelSource(model=model, reference=ref, current=cur, roles=ROLES)

    out = run_drift(cfg, AS_OF, ["churn"], load_source=load, log_mlflow=False, progress=False)
    folder = cfg.paths.reports_dir / "drift" / "churn" / "20250602T000000Z"
    assert (folder / "report.html").is_file() and (folder / "evidently.json").is_file()
    summary = json.loads((folder / "summary.json").read_text())
    assert any("visits" in n for n in summary["notes"])
    assert out.loc[0, "status"] in {"ok", "warning", "drift"}
