"""`rebuy train offer` on a real decision log: a randomized campaign run on a simulated shop (its effects in
the orders), written as an export, imported with `rebuy import-decisions`, learned after the attribution
window, registered in MLflow with its drift reference, no pickles anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.demo import DemoOptions, past_campaign
from rebuy.config import load_config
from rebuy.ingest import write_canonical
from rebuy.simulator import ShopSimulator, SimConfig
from training.offer import MARGIN_PATHS, REGISTERED_NAME, load_offer_champion
from training.registry import CHALLENGER, CHAMPION, alias_version, client


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.Timestamp, pd.Timestamp]:
    """1,500 customers; every customer with an order got a uniformly random offer, 14 days ago."""
    root = tmp_path_factory.mktemp("offer_e2e")
    (root / "rebuy.toml").write_text(
        f'[paths]\ndata_dir = "{root}"\n\n[training.optuna]\ntrials = 3\n', "utf-8"
    )
    cfg = load_config(root / "rebuy.toml")
    # strong effects (scale 6) so a learned policy surely beats uniformly random offers on ~500 held-out rows
    sim = ShopSimulator(SimConfig(customers=1500, months=12, seed=23, events=False, effect_scale=6.0))
    tables = sim.run_history()
    sent_at = sim.now
    tables = past_campaign(
        sim, tables, cfg, DemoOptions(seed=23, past_campaign_weeks=1), root / "past_decisions.parquet"
    )
    write_canonical(tables, cfg.paths.data_dir)
    return root, sent_at, sim.now


def _run(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_train_offer_from_an_imported_decision_log(shop) -> None:
    root, sent_at, now = shop
    conf = ["--config", str(root / "rebuy.toml")]
    out = _run("import-decisions", str(root / "past_decisions.parquet"), *conf, "--as-of", str(now))
    assert "0 already in the log" in out

    # one day before the attribution window ends nothing has matured: a clear error, nothing registered
    r = CliRunner().invoke(app, ["train", "offer", *conf, "--as-of", str(now - pd.Timedelta(days=1))])
    assert r.exit_code != 0 and "attribution window" in str(r.exception or r.output)

    out = _run("train", "offer", *conf, "--as-of", str(now))
    cfg = load_config(root / "rebuy.toml")
    version = alias_version(cfg, REGISTERED_NAME, CHALLENGER)
    assert version == "1" and "'promoted': True" in out, out
    assert alias_version(cfg, REGISTERED_NAME, CHAMPION) == version
    champ = load_offer_champion(cfg)
    assert champ is not None and champ.feature_service == "offer_v1"
    assert set(champ.offers) == {"care_message", "coupon_10pct", "free_shipping", "points_x2", "wake_up_gift"}

    # the drift reference: KEYS + the offer_v1 features of training rows, decided at the campaign's day
    import mlflow

    run_id = client(cfg).get_model_version(REGISTERED_NAME, version).run_id
    ref = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="reference/reference.parquet", tracking_uri=cfg.mlflow_uri
        )
    )
    # the margin paths' validation comparison is recorded with the run, and the kept one is what is served
    run = client(cfg).get_run(run_id)
    assert champ.meta["margin_path"] in MARGIN_PATHS
    assert run.data.params["margin_path"] == champ.meta["margin_path"]
    assert {f"valid_dr_path.{p}.{k}" for p in MARGIN_PATHS for k in ("value", "low", "high")} <= set(
        run.data.metrics
    )
    paths = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="info/margin_paths.json", tracking_uri=cfg.mlflow_uri
            )
        ).read_text("utf-8")
    )
    assert [p["path"] for p in paths if p["chosen"]] == [champ.meta["margin_path"]]

    assert list(ref.columns[:2]) == ["customer_id", "cutoff"]
    assert list(ref.columns[2:]) == champ.feature_names and len(ref) > 100
    assert set(pd.to_datetime(ref["cutoff"], utc=True)) == {sent_at}

    # never a pickle: no pickle files, and no file starting with pickle's protocol marker
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib")]
    assert not [p for p in files if p.read_bytes()[:1] == b"\x80" and "offer" in str(p)]
