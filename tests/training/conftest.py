"""Trained models on the small simulated shop, built once per test run, for training tests and for other
stages' tests to reuse (`trained_models`: cfg + {spec name: ModelRun}, registered in MLflow).

`synth_shop` is a tiny buy-till-you-die shop (synth.py) for the fast tests that need a training set but
not Feast: errors, the gate, resuming.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import make_shop

from rebuy.config import Config, load_config

MODELS = ("churn", "repurchase", "days_to_next", "value")


def small_cfg(data_dir: Path, trials: int = 6) -> Config:
    cfg = load_config(None, data_dir=data_dir)
    opt = cfg.training.optuna.model_copy(update={"trials": trials})
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})


def shop_training_sets(cfg: Config, shop, models=MODELS):  # type: ignore[no-untyped-def]
    """Point-in-time training sets of the shop through Feast and each spec's cutoff grid, as `rebuy train`
    builds them (training.run.training_sets)."""
    from training.run import training_sets

    return training_sets(cfg, list(models), shop.tables, shop.sim.now, show_progress=False)


@pytest.fixture(scope="session")
def synth_shop():
    """(training set with rfm_* columns, oracle frames per model, orders) for 3,000 customers."""
    return make_shop(3000, seed=3)


@pytest.fixture(scope="session")
def trained_models(session_tmp, small_shop):
    """cfg + {spec name: ModelRun} for churn, repurchase, days_to_next and value on `small_shop`."""
    from training.run import known_services, simulator_oracle, train_specs

    cfg = small_cfg(session_tmp / "trained")
    sets, grids = shop_training_sets(cfg, small_shop)
    runs = train_specs(
        cfg,
        list(MODELS),
        sets,
        known_services(),
        oracle=simulator_oracle(small_shop.sim),
        show_progress=False,
        grids=grids,
    )
    return cfg, runs
