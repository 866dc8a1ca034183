"""Trained models, built once per test run, for training tests and for other stages' tests to reuse.

Until the shop simulator and the Feast training sets are wired in here, the shop is the small
buy-till-you-die shop of `synth.py` (hidden state known, so the oracle is exact).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import FEATURES, make_shop

from rebuy.config import Config, load_config


def small_cfg(data_dir: Path, trials: int = 6) -> Config:
    cfg = load_config(None, data_dir=data_dir)
    opt = cfg.training.optuna.model_copy(update={"trials": trials, "timeout_seconds": 60})
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})


@pytest.fixture(scope="session")
def synth_shop():
    """(training set with rfm_* columns, oracle frames per model, orders) for 3,000 customers."""
    return make_shop(3000, seed=3)


@pytest.fixture(scope="session")
def trained_models(session_tmp, synth_shop):
    """cfg + {spec name: ModelRun} for churn, repurchase, days_to_next and value, registered in MLflow."""
    from training.run import train_specs

    df, oracles, _orders = synth_shop
    cfg = small_cfg(session_tmp / "trained")
    services = {"churn_v1": FEATURES, "repurchase_v1": FEATURES, "value_v1": FEATURES}
    sets = dict.fromkeys(services, df)

    runs = train_specs(cfg, ["churn", "repurchase", "days_to_next", "value"], sets, services,
                       oracle=lambda _keys, spec: oracles.get(spec.name), show_progress=False)
    return cfg, runs
