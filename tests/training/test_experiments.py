"""Every MLflow experiment rebuy creates keeps its artifacts under the data directory, never ./mlruns."""

from __future__ import annotations

import os
from pathlib import Path

from rebuy.config import load_config
from training.registry import client, experiment_id


def test_experiments_store_artifacts_under_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a process running elsewhere must not matter
    cfg = load_config(data_dir=tmp_path / "shop")
    first = experiment_id(cfg, "rebuy-drift")
    assert experiment_id(cfg, "rebuy-drift") == first  # found again, not created twice
    location = client(cfg).get_experiment(first).artifact_location
    assert location.startswith((cfg.paths.mlflow_dir / "artifacts").resolve().as_uri())
    assert not (tmp_path / "mlruns").exists() and not os.path.exists(tmp_path / "mlflow.db")
