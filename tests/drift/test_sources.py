"""The default sources: cutoff choice by hand, and `rebuy drift` / `rebuy retrain` against a real champion."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines import drift_sources
from pipelines.drift_sources import matured_cutoff, window_cutoffs


def _ts(*days: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(days), utc=True))


def test_window_cutoffs_follow_the_reference_weekdays() -> None:
    ref = _ts("2025-01-06", "2025-01-20")  # Mondays
    as_of = pd.Timestamp("2025-03-13 15:00", tz="UTC")  # a Thursday afternoon
    # 14 days back from Mar 13: Mondays Mar 3 and Mar 10
    assert window_cutoffs(ref, as_of, 14) == [
        pd.Timestamp("2025-03-03", tz="UTC"),
        pd.Timestamp("2025-03-10", tz="UTC"),
    ]
    # a 3-day window holds no Monday: the latest midnight, and the weekday note comes from sampling
    assert window_cutoffs(ref, as_of, 3) == [pd.Timestamp("2025-03-13", tz="UTC")]


def test_matured_cutoff_is_out_of_time_and_past_its_horizon() -> None:
    ref = _ts("2025-01-06", "2025-01-20")  # Mondays, last seen Jan 20
    # Mar 31 (Monday) − 30 d = Mar 1 (Saturday) -> back to Monday Feb 24, after Jan 20
    assert matured_cutoff(ref, pd.Timestamp("2025-03-31", tz="UTC"), 30) == pd.Timestamp(
        "2025-02-24", tz="UTC"
    )
    # 60 days before Feb 10 is Dec 12: the model saw that period -> nothing out of time yet
    assert matured_cutoff(ref, pd.Timestamp("2025-02-10", tz="UTC"), 60) is None


@pytest.mark.slow
def test_drift_and_retrain_on_a_registered_champion(session_tmp, small_shop) -> None:  # type: ignore[no-untyped-def]
    """Train a churn champion on the small shop, then monitor it with the default sources and retrain."""
    from features.training_set import build_training_set, cutoff_grid
    from pipelines.drift import read_summaries, run_drift, run_retrain
    from rebuy.config import load_config
    from rebuy.ingest import write_canonical
    from training.run import known_services, train_specs, with_rfm
    from training.specs import get_spec

    cfg = load_config(None, data_dir=session_tmp / "drift_champion")
    opt = cfg.training.optuna.model_copy(update={"trials": 2})
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})
    write_canonical(small_shop.tables, cfg.paths.data_dir)
    now = small_shop.sim.now
    service = get_spec(cfg, "churn").feature_service
    sets = {
        service: with_rfm(
            build_training_set(cfg, service, cutoff_grid(cfg, now), small_shop.tables),
            small_shop.tables["orders"],
        )
    }
    runs = train_specs(cfg, ["churn"], sets, known_services(), show_progress=False)
    assert runs["churn"].outcome.promoted  # the first version becomes champion

    out = run_drift(cfg, now, ["churn"], load_source=drift_sources.load_model_source, progress=False)
    row = out.iloc[0]
    assert row["status"] in ("ok", "warning", "drift") and row["line"].startswith("churn: ")
    summary = read_summaries(cfg.paths.reports_dir / "drift")[-1]
    cols = {c["column"]: c for c in summary["columns"]}
    assert "prediction" in cols and cols["prediction"]["role"] == "prediction"
    assert summary["model_version"] == runs["churn"].outcome.version
    assert summary["reference_rows"] > 500 and summary["current_rows"] > 500
    from training.registry import client

    mv = client(cfg).get_model_version("rebuy-churn", runs["churn"].outcome.version)
    assert mv.tags["rebuy.drift_status"] == row["status"]
    # the champion's cutoffs end a horizon before `now`, so no out-of-time labelled rows exist yet
    assert any("performance not measured" in n or "matured labels" in n for n in summary["notes"])

    calls: list[str] = []
    decisions = run_retrain(
        cfg, now, ["churn"], if_drift=True, train=lambda c, m, a: calls.append(m) or {"promoted": False}
    )
    assert calls == (["churn"] if row["status"] == "drift" else [])
    record = json.loads(next((cfg.paths.reports_dir / "drift" / "retrain").glob("*.json")).read_text())
    assert record["decisions"][0]["model"] == "churn" and record["decisions"][0]["retrain"] == bool(
        decisions.iloc[0]["retrain"]
    )


def test_served_rows_window_model_and_latest_per_customer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rebuy.config import load_config
    from serving import prediction_log

    at = pd.to_datetime(
        ["2025-03-01 10:00", "2025-03-05 09:00", "2025-03-05 12:00", "2025-02-01 00:00", "2025-03-04 00:00"],
        utc=True,
    )
    log = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "model": ["churn"] * 4 + ["value"],
            "version": "1",
            "scored_at": at,
            "score": [0.1, 0.2, 0.3, 0.4, 0.5],
            "x": 1.0,
        }
    )
    monkeypatch.setattr(prediction_log, "read", lambda cfg: log)
    cfg = load_config(None, data_dir=tmp_path)
    rows = drift_sources._served_rows(cfg, "churn", "rebuy-churn", pd.Timestamp("2025-03-06", tz="UTC"))
    # 14-day window from Mar 6: c (Feb 1) is too old, d is another model; a keeps its later score
    assert rows is not None
    assert dict(zip(rows["customer_id"], rows["prediction"], strict=True)) == {"a": 0.2, "b": 0.3}
    assert "cutoff" in rows.columns
    # a reference cut on Saturdays only (Mar 1 is one): a's Saturday score, not its later Wednesday one
    sat = drift_sources._served_rows(cfg, "churn", "rebuy-churn", pd.Timestamp("2025-03-06", tz="UTC"), {5})
    assert sat is not None and dict(zip(sat["customer_id"], sat["prediction"], strict=True)) == {"a": 0.1}


def test_cli_drift_without_champions_says_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cli.app import app

    res = CliRunner().invoke(
        app, ["drift", "--data-dir", str(tmp_path), "--as-of", "2025-06-02", "-m", "churn", "--no-mlflow"]
    )
    assert res.exit_code == 0, res.output
    assert "churn: not monitored" in res.output and "rebuy train churn" in res.output
    assert (tmp_path / "reports" / "drift" / "index.html").is_file()


def test_drift_never_imports_its_adapters() -> None:
    """drift_sources (adapters) imports drift (analysis), never the other way, not even inside a function."""
    import ast
    from pathlib import Path

    import pipelines.drift as drift

    tree = ast.parse(Path(drift.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(m.startswith("pipelines.drift_sources") for m in imported), imported
    assert "pipelines.drift" in {
        n.module
        for n in ast.walk(ast.parse(Path(drift_sources.__file__).read_text()))
        if isinstance(n, ast.ImportFrom)
    }
