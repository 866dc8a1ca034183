"""`rebuy train offer` / `rebuy evaluate-policy` against a real MLflow registry (decision-log reading replaced
by a small randomized set with known effects): registration, the champion gate, serving's loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import training.offer as offer
from cli.app import app
from rebuy.config import load_config
from tests.offer.synth import make_campaign
from training.offer import LoggedSet, OfferData, load_offer_champion


def _data(seed: int, swap: bool = False) -> OfferData:
    d = make_campaign(5000, seed)
    arm = d["arm"]
    if swap:  # a model trained on this learns the effect of A backwards
        arm = np.where(arm == "A", "none", np.where(arm == "none", "A", arm)).astype(object)
    conv, spend = d["outcomes"]["conversion"], d["outcomes"]["spend"]
    out = pd.DataFrame({"conversion": conv, "margin": spend * 0.35, "revenue": spend, "n_orders": conv})
    keys = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(len(arm))], "cutoff": pd.Timestamp("2025-01-01")}
    )
    data = LoggedSet(d["X"], arm, d["propensity"], out, ("seg",), keys=keys)
    held = offer.hash_split([f"d{i}" for i in range(len(arm))], 0.3)
    return OfferData(data.take(np.flatnonzero(~held)), data.take(np.flatnonzero(held)), len(arm))


def test_train_gate_evaluate_and_refuse(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(None, data_dir=tmp_path)
    cfg.training.optuna.trials = 3
    good, bad = _data(41), _data(41, swap=True)
    honest_test = good.test
    monkeypatch.setattr(offer, "offer_data", lambda cfg, as_of, test_share=0.3: good)
    first = offer.train_offer(cfg, pd.Timestamp("2025-01-01", tz="UTC"))
    # no champion yet: the candidate is judged against the logging policy (uniform random arms)
    assert first["previous_champion"] is None
    assert first["promoted"], first["reason"]
    champ = load_offer_champion(cfg)
    assert champ is not None and champ.version == first["version"] and set(champ.offers) == {"A", "B"}

    # a worse model is registered as challenger, judged on honest held-out rows, and refused
    monkeypatch.setattr(
        offer,
        "offer_data",
        lambda cfg, as_of, test_share=0.3: OfferData(bad.train, honest_test, bad.n_decisions),
    )
    second = offer.train_offer(cfg, pd.Timestamp("2025-01-02", tz="UTC"))
    assert not second["promoted"] and "keep the current policy" in second["reason"]
    assert load_offer_champion(cfg).version == first["version"]

    # evaluate-policy on the challenger: the same refusal through the CLI, champion unchanged
    r = CliRunner().invoke(app, ["evaluate-policy", "--data-dir", str(tmp_path), "--as-of", "2025-01-03"])
    assert r.exit_code == 0, r.output
    assert "keep the current policy" in r.output and "promoted" not in r.output
    assert load_offer_champion(cfg).version == first["version"]
