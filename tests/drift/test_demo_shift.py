"""The demo's one true story on a small shop: fresh champions, then a week of the demo's injected shift
(add-to-cart tracking off). Repurchase and days-to-next read cart features: drift, carts on top. Churn and
value read none: ok. Fails if the reference ages into drift (the old behaviour) or the outage is missed.
"""

from __future__ import annotations

import pytest

CUSTOMERS, MONTHS, SEED = 3000, 18, 23  # the "3k-customer 18-month shop"; seed chosen before looking
MODELS = ["churn", "repurchase", "days_to_next", "value"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="open (#23): measured 2026-12-05, value reads drift three days after training (orders_365d zero "
    "share, effect ~0.6: its reference week is likely dated too early by trained_as_of), and the cart outage "
    "is missed in week 1 when the current rows are the window's recomputed midnights (benchmarks drift-tuning.md)",
)
def test_cart_outage_is_drift_on_the_models_that_read_carts_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from features.store import merge_new_rows
    from pipelines.demo import TrackingOutage
    from pipelines.drift import read_summaries, run_drift
    from pipelines.drift_sources import load_model_source
    from rebuy.config import load_config
    from rebuy.ingest import write_canonical
    from rebuy.simulator import ShopSimulator, SimConfig
    from training.run import known_services, train_specs, training_sets

    cfg = load_config(None, data_dir=tmp_path)
    opt = cfg.training.optuna.model_copy(update={"trials": 2, "timeout_seconds": 60})
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})
    sim = ShopSimulator(
        SimConfig(customers=CUSTOMERS, months=MONTHS, seed=SEED, events=True, start="2024-01-01")
    )
    tables = sim.run_history()
    write_canonical(tables, cfg.paths.data_dir)
    trained_at = sim.now
    sets, grids = training_sets(cfg, MODELS, tables, trained_at, show_progress=False)
    runs = train_specs(cfg, MODELS, sets, known_services(), show_progress=False, grids=grids)
    assert all(runs[m].outcome.promoted for m in MODELS)

    # three days of the shop as it was (the "three days after training"), all models ok
    tables = merge_new_rows(tables, sim.step(3))
    write_canonical(tables, cfg.paths.data_dir)
    out = run_drift(cfg, sim.now, MODELS, load_source=load_model_source, log_mlflow=False, progress=False)
    assert dict(zip(out["model"], out["status"], strict=True)) == dict.fromkeys(MODELS, "ok"), list(
        out["line"]
    )

    # then a week with add-to-cart tracking off
    live = TrackingOutage(sim, "cart", sim.now)
    tables = merge_new_rows(tables, live.step(7))
    write_canonical(tables, cfg.paths.data_dir)
    out = run_drift(cfg, sim.now, MODELS, load_source=load_model_source, log_mlflow=False, progress=False)
    status = dict(zip(out["model"], out["status"], strict=True))
    assert status == {"churn": "ok", "repurchase": "drift", "days_to_next": "drift", "value": "ok"}, list(
        out["line"]
    )
    latest = {s["model"]: s for s in read_summaries(cfg.paths.reports_dir / "drift")}
    for m in ("repurchase", "days_to_next"):
        assert "carts_" in latest[m]["reasons"][0], latest[m]["reasons"]
