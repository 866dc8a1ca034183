"""Same data + same config -> byte-identical model files, whatever else the machine is doing.

Optuna's budget is a number of trials (a wall-time budget finished fewer trials on a loaded machine and so
chose other parameters); the sampler is seeded and LightGBM runs single-threaded and deterministic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import small_cfg

from rebuy.config import Config, ConfigError, load_config
from training.pipeline import TrainResult, train
from training.specs import get_spec


def _write_model(res: TrainResult, out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    res.booster.save_model(str(out / "model.lgb"))  # what mlflow.lightgbm.log_model writes for a Booster
    (out / "calibrator.json").write_text(json.dumps(res.calibrator, sort_keys=True), encoding="utf-8")
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_two_runs_from_empty_study_storage_give_byte_identical_models_even_beside_a_cpu_hog(
    synth_shop, tmp_path
):
    from synth import FEATURES

    df, _oracle, _orders = synth_shop
    files = []
    for i, hog in enumerate((False, True)):
        cfg = small_cfg(tmp_path / f"run{i}", trials=4)
        assert not (cfg.paths.data_dir / "optuna").exists()  # each run starts from empty study storage
        spec = get_spec(cfg, "churn")
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
        try:
            res = train(cfg, spec, df, feature_names=FEATURES, show_progress=False)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        assert res.tuning["n_trials"] == 4 and res.tuning["resumed_from"] == 0
        files.append(_write_model(res, tmp_path / f"model{i}"))
    assert files[0].keys() == {"model.lgb", "calibrator.json"}
    for name in files[0]:
        assert files[0][name] == files[1][name], f"{name} differs between the two runs"


def test_a_wall_time_budget_in_the_config_is_refused_with_what_to_do(tmp_path):
    toml = tmp_path / "rebuy.toml"
    toml.write_text("[training.optuna]\ntrials = 3\ntimeout_seconds = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"timeout_seconds is gone.*training\.optuna\.trials"):
        load_config(toml)
    assert Config().training.optuna.trials == 20
