"""The decision log, outbox, forget list, pass lock, MLflow and Optuna on a real Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines import decision_log as dl
from pipelines.orchestrator import LockedError, forget, pass_lock, run_pass
from pipelines.schema import HEAD, current
from tests.pipelines.conftest import AS_OF, make_shop
from tests.pipelines.test_crash import _check
from tests.support.fake_client import FakeScoreClient

N, SEED = 250, 3


def _cfg(stores_config, tmp_path: Path, url: str | None = None, **stores):  # type: ignore[no-untyped-def]
    return (
        stores_config(tmp_path, decision_log_url=url, **stores) if url else stores_config(tmp_path, **stores)
    )


def test_migrations_and_rebuy_db_upgrade_on_postgres(tmp_path: Path, pg_schema, namespace) -> None:
    url = pg_schema()
    (tmp_path / "rebuy.toml").write_text(f'[stores]\ndecision_log_url = "{url}"\nnamespace = "{namespace}"\n')
    cmd = [sys.executable, "-m", "cli", "db", "upgrade", "--config", str(tmp_path / "rebuy.toml")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert f"new -> {HEAD}" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert f"{HEAD} -> {HEAD}" in again.stdout
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert current(conn) == HEAD
        assert {"decisions", "outbox", "forgotten", "prediction_log"} <= set(
            sa.inspect(conn).get_table_names()
        )
    engine.dispose()


def test_a_pass_on_postgres_decides_exactly_as_on_sqlite(tmp_path: Path, pg_schema, stores_config) -> None:
    shop = make_shop(N, SEED)
    lite = _cfg(stores_config, tmp_path / "lite")
    pg = _cfg(stores_config, tmp_path / "pg", pg_schema())
    a = run_pass(lite, AS_OF, shop, FakeScoreClient())
    b = run_pass(pg, AS_OF, shop, FakeScoreClient())
    assert a.summary()["decided"] == b.summary()["decided"] > 50
    ref = _check(lite)
    _check(pg, ref)  # same decisions, propensities and sink, every message delivered once
    again = run_pass(pg, AS_OF, shop, FakeScoreClient())  # a rerun decides nothing new
    assert again.summary()["decided"] == 0 and again.already_decided > 0
    engine = dl.engine_for(pg.decision_log_url)
    with engine.connect() as conn:
        got = dl.read_decisions(conn)
    engine.dispose()
    assert str(got["decided_at"].dt.tz) == "UTC" and (got["decided_at"] == AS_OF).all()


def test_forget_on_postgres(tmp_path: Path, pg_schema, stores_config) -> None:
    shop = make_shop(60, SEED)
    cfg = _cfg(stores_config, tmp_path, pg_schema())
    res = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    who = res.decisions["customer_id"].iloc[0]
    out = forget(cfg, who, AS_OF)
    assert out["decisions_pseudonymised"] >= 1
    engine = dl.engine_for(cfg.decision_log_url)
    with engine.connect() as conn:
        d = dl.read_decisions(conn)
        assert len(dl.forgotten_hashes(conn)) == 1
    engine.dispose()
    assert who not in set(d["customer_id"])
    client = FakeScoreClient()
    run_pass(cfg, AS_OF + pd.Timedelta(days=3), shop, client)
    assert who not in client.scored


def test_advisory_pass_lock_excludes_other_sessions_and_processes(
    tmp_path: Path, pg_schema, stores_config, namespace
) -> None:
    from rebuy.ingest import write_canonical

    url = pg_schema()
    cfg = _cfg(stores_config, tmp_path, url)
    with pass_lock(cfg) as where:
        assert "advisory lock" in str(where)
        with pytest.raises(LockedError, match="another rebuy pass holds the advisory lock"), pass_lock(cfg):
            pass  # a second session in this process
        other = _cfg(stores_config, tmp_path, url, namespace=namespace + "x")
        with pass_lock(other):  # another namespace is another installation: not blocked
            pass
        # `rebuy run` in another process (another host, as far as Postgres can tell) exits 2
        write_canonical(make_shop(20, SEED), tmp_path / "shop")
        toml = tmp_path / "rebuy.toml"
        toml.write_text(
            f'[paths]\ndata_dir = "shop"\n[stores]\ndecision_log_url = "{url}"\nnamespace = "{namespace}"\n'
        )
        env = {**os.environ, "COLUMNS": "200"}
        cmd = [sys.executable, "-m", "cli", "run", "--config", str(toml), "--as-of", AS_OF.isoformat()]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
        assert run.returncode == 2, run.stderr
        assert "another rebuy pass holds the advisory lock" in run.stderr
        assert "Traceback" not in run.stderr
    with pass_lock(cfg):  # released
        pass


def test_mlflow_and_optuna_on_postgres(tmp_path: Path, infra, stores_config, pg_schema) -> None:
    """Tracking and registry in the session's database, studies in a schema of their own (both use a table
    named alembic_version, so they cannot share one), artifacts at the configured root."""
    import optuna

    from training.registry import client, experiment_id
    from training.tuning import study_storage

    cfg = stores_config(
        tmp_path,
        mlflow_tracking_uri=infra.pg_url,
        optuna_storage=pg_schema("optuna"),
        mlflow_artifact_root=str(tmp_path / "artifacts"),
    )
    exp = experiment_id(cfg, "rebuy-infra-test")
    c = client(cfg)
    assert c.get_experiment(exp).artifact_location == (tmp_path / "artifacts").as_uri()
    run = c.create_run(exp)
    c.log_metric(run.info.run_id, "auc", 0.75)
    c.create_registered_model("rebuy-infra-test")
    assert c.get_run(run.info.run_id).data.metrics["auc"] == 0.75
    assert not (tmp_path / "mlflow").exists()  # nothing embedded was created
    study = optuna.create_study(storage=study_storage(cfg), study_name="infra-test", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(storage=cfg.optuna_storage_url, study_name="infra-test")
    assert len(again.trials) == 3
