"""End to end with the real upstream: champions trained on the small simulated shop, a materialized Feast
online store, and `scorer_from_registry`. Served == `rebuy score` == the offline pipeline (historical
features at the same instant through `features.training_set`, then the bundles) within 1e-6.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.server import stop_process_group

pytestmark = [pytest.mark.slow, pytest.mark.server]

MODELS = ("churn", "repurchase", "days_to_next", "value")
COLUMNS = {
    "churn": "churn_probability",
    "repurchase": "repurchase_probability",
    "days_to_next": "expected_days_to_next_order",
    "value": "expected_value",
}


@pytest.fixture(scope="module")
def trained(session_tmp: Path, small_shop: Any) -> tuple[Any, pd.Timestamp]:
    from features.store import materialize
    from features.training_set import build_training_set
    from rebuy.config import load_config
    from training.run import known_services, train_specs, with_rfm
    from training.specs import get_spec
    from training.split import spec_grid

    cfg = load_config(None, data_dir=session_tmp / "serving-e2e")
    opt = cfg.training.optuna.model_copy(update={"trials": 3})
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"optuna": opt})})
    tables = small_shop.tables
    # each model's own grid (training.split.spec_grid: the purge before validation and test drops the cutoffs
    # whose label window reaches into them, so the grid starts earlier for the longer horizons)
    end = pd.Timestamp(small_shop.sim.now).tz_convert("UTC")
    cutoffs = sorted(set().union(*(spec_grid(cfg, end, get_spec(cfg, m)) for m in MODELS)))
    sets = {
        svc: with_rfm(build_training_set(cfg, svc, cutoffs, tables), tables["orders"])
        for svc in dict.fromkeys(get_spec(cfg, m).feature_service for m in MODELS)
    }
    train_specs(cfg, list(MODELS), sets, known_services(), show_progress=False)
    as_of = pd.Timestamp(small_shop.sim.now).tz_convert("UTC")
    materialize(cfg, as_of, tables)
    return cfg, as_of


def serve_and_score(data_dir: Path, ids: list[str], as_of: pd.Timestamp, tmp: Path) -> list[dict[str, Any]]:
    """`rebuy serve` (default factory: registry + online store) in a subprocess; /score in batches of 50."""
    port = free_port()
    cfg_file = tmp / "rebuy.toml"
    cfg_file.write_text(f"[serving]\nport = {port}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REBUY_", "PROMETHEUS_"))}
    env["BENTOML_HOME"] = str(tmp / "bentoml")
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli.app import main; main()",
            "serve",
            "--config",
            str(cfg_file),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 480  # two scorer loads (preflight + worker) on a loaded machine
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((tmp / "server.log").read_text(errors="replace")[-3000:])
        served: list[dict[str, Any]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            for start in range(0, len(ids), 50):
                r = c.post(
                    "/score", json={"customer_ids": ids[start : start + 50], "as_of": as_of.isoformat()}
                )
                assert r.status_code == 200, r.text
                served += r.json()["results"]
        return served
    finally:
        stop_process_group(proc)
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_equals_batch_equals_offline_pipeline(
    trained: tuple[Any, pd.Timestamp], small_shop: Any, tmp_path: Path
) -> None:
    from features.training_set import build_training_set
    from serving.batch import score_to_parquet
    from serving.champions import scorer_from_registry

    cfg, as_of = trained
    ids = [*small_shop.tables["customers"]["customer_id"].astype(str).tolist()[:150], "nobody-at-all"]
    scorer = scorer_from_registry(cfg)

    res = score_to_parquet(cfg, as_of, tmp_path / "scores.parquet", ids)
    batch = pd.read_parquet(res.path).set_index("customer_id")
    assert res.cold_start >= 1 and bool(batch.loc["nobody-at-all", "cold_start"])

    served = serve_and_score(cfg.paths.data_dir, ids, as_of, tmp_path)
    assert [s["customer_id"] for s in served] == ids
    assert served[0]["model_versions"] == scorer.model_versions

    known = [c for c in ids if c != "nobody-at-all"]
    for name, col in COLUMNS.items():
        np.testing.assert_allclose(
            [s[col] for s in served], batch.loc[ids, col].to_numpy(), rtol=0, atol=1e-6
        )
        m = scorer.models[name]
        ts = build_training_set(cfg, m.feature_service, [as_of], small_shop.tables)
        ts = ts.set_index("customer_id")
        have = [c for c in known if c in ts.index]
        assert len(have) >= 0.9 * len(known)
        offline = m.predict(ts.loc[have, list(m.feature_names)].to_numpy(dtype=np.float64))
        np.testing.assert_allclose(batch.loc[have, col].to_numpy(), offline, rtol=0, atol=1e-6)
    for s in served[:20]:
        assert s["reasons"] == json.loads(batch.loc[s["customer_id"], "reasons"])
