"""`rebuy score`: the batch path equals the served scores and the offline predictions (within 1e-6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from rebuy.config import Config, PathsConfig
from rebuy.errors import DataError
from serving.batch import read_id_list, score_to_parquet
from tests.support.synthetic import synthetic_scorer

AS_OF = pd.Timestamp("2025-06-30T12:00:00Z")
IDS = ["c000000", "c000007", "c001999", "unknown-1"]


@pytest.fixture(scope="module")
def synth() -> Any:
    return synthetic_scorer()  # the same seed and size the in-process service builds


def cfg_for(tmp: Path) -> Config:
    return Config(paths=PathsConfig(data_dir=tmp))


def test_served_equals_batch_equals_offline(client: Any, synth: Any, tmp_path: Path) -> None:
    scorer, table = synth
    res = score_to_parquet(cfg_for(tmp_path), AS_OF, tmp_path / "scores.parquet", IDS, scorer=scorer)
    batch = pd.read_parquet(res.path).set_index("customer_id")
    served = client.post("/score", json={"customer_ids": IDS, "as_of": AS_OF.isoformat()}).json()["results"]
    cols = {
        "churn": "churn_probability",
        "repurchase": "repurchase_probability",
        "days_to_next": "expected_days_to_next_order",
        "value": "expected_value",
    }
    known = [c for c in IDS if c in table.index]
    for model, col in cols.items():
        m = scorer.models[model]
        offline = m.predict(table.loc[known, list(m.feature_names)].to_numpy(dtype=np.float64))
        np.testing.assert_allclose(batch.loc[known, col].to_numpy(), offline, rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            [s[col] for s in served], batch.loc[IDS, col].to_numpy(), rtol=0, atol=1e-6
        )
    for s in served:
        row = batch.loc[s["customer_id"]]
        assert s["segment"] == row["segment"] and s["best_offer"] == row["best_offer"]
        assert s["cold_start"] == bool(row["cold_start"])
        assert s["reasons"] == json.loads(row["reasons"])
        for o, est in s["offers"].items():
            assert est["incremental_margin"] == pytest.approx(row[f"offer_{o}_incremental_margin"], abs=1e-6)
    assert res.customers == 4 and res.cold_start == 1


def test_every_customer_by_default_and_atomic_output(synth: Any, tmp_path: Path) -> None:
    scorer, table = synth
    canon = tmp_path / "canonical"
    canon.mkdir()
    ids = table.index[:300].tolist()
    pd.DataFrame({"customer_id": ids}).to_parquet(canon / "customers.parquet")
    out = tmp_path / "out" / "scores.parquet"
    res = score_to_parquet(cfg_for(tmp_path), AS_OF, out, scorer=scorer, reasons=False)
    df = pd.read_parquet(out)
    assert df["customer_id"].tolist() == ids and res.cold_start == 0
    assert (df["reasons"] == "[]").all()
    assert [p.name for p in out.parent.iterdir()] == ["scores.parquet"]  # no temp file left behind


def test_bad_customer_lists_write_nothing(synth: Any, tmp_path: Path) -> None:
    scorer, _ = synth
    out = tmp_path / "scores.parquet"
    with pytest.raises(DataError, match="duplicate"):
        score_to_parquet(cfg_for(tmp_path), AS_OF, out, ["c1", "c2", "c1"], scorer=scorer)
    (tmp_path / "ids.csv").write_text("id\nc1\n", encoding="utf-8")
    with pytest.raises(DataError, match="customer_id"):
        read_id_list(tmp_path / "ids.csv")
    (tmp_path / "ids.txt").write_text("c000001\n\nc000002\n", encoding="utf-8")
    assert read_id_list(tmp_path / "ids.txt") == ["c000001", "c000002"]
    assert not out.exists()


def test_cli_score_without_models_says_what_to_run(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["score", "--out", str(tmp_path / "s.parquet"), "--data-dir", str(tmp_path)])
    assert r.exit_code != 0
    assert "rebuy train" in str(r.exception) + r.output
    assert not (tmp_path / "s.parquet").exists()


def test_an_id_list_that_is_empty_or_repeats_an_id_is_refused_naming_the_ids(tmp_path):
    from rebuy.config import load_config
    from rebuy.errors import DataError
    from serving.batch import ids_to_score

    cfg = load_config(None, data_dir=tmp_path)
    assert ids_to_score(cfg, ["A", "B"]) == ["A", "B"]
    with pytest.raises(DataError, match="no customers to score"):
        ids_to_score(cfg, [])
    with pytest.raises(DataError, match=r"duplicate customer ids in the list: \['B'\]"):
        ids_to_score(cfg, ["A", "B", "B"])
