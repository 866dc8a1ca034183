"""Costs per arm name for imported campaigns, the policy table's estimator order, and full-width tables
when the output is piped (issue #22 items 17 and 18)."""

from __future__ import annotations

import pandas as pd
import pytest

from cli.app import make_console
from rebuy.config import Config, ConfigError, load_config
from rebuy.errors import RebuyError
from tests.offer.test_campaign import _campaign
from training.campaign import campaign_costs, learn_campaign, policy_table


def test_costs_by_the_exports_arm_names_override_the_catalogue() -> None:
    arms = ["Mens E-Mail", "coupon_10pct", "none"]
    cfg = Config()
    costs = campaign_costs(arms, cfg.offers, {"Mens E-Mail": 0.15})
    assert costs == {
        "Mens E-Mail": 0.15,
        "coupon_10pct": cfg.offers.catalogue["coupon_10pct"].cost,
        "none": 0.0,
    }
    assert campaign_costs(arms, cfg.offers, {"coupon_10pct": 1.0})["coupon_10pct"] == 1.0


def test_a_cost_for_an_arm_the_export_lacks_is_a_clear_error() -> None:
    with pytest.raises(RebuyError, match=r"'Mens Email'.*its arms are \['Mens E-Mail', 'none'\]"):
        campaign_costs(["Mens E-Mail", "none"], None, {"Mens Email": 0.15})


def test_arm_costs_from_the_config_reach_the_money_outcome_only(tmp_path) -> None:
    toml = tmp_path / "rebuy.toml"
    toml.write_text('[import.campaign.arm_costs]\n"Mens E-Mail" = 0.15\n', encoding="utf-8")
    cfg = load_config(toml)
    data, _ = _campaign(1500, 5, "one_arm")
    data.frame["arm"] = data.frame["arm"].map({"A": "Mens E-Mail", "B": "B", "none": "none"})
    report = learn_campaign(data, cfg.offers, named_costs=cfg.import_.campaign.arm_costs, primary="spend")
    assert report.outcomes["spend"].costs == {"B": 0.0, "Mens E-Mail": 0.15, "none": 0.0}
    assert set(report.outcomes["converted"].costs.values()) == {0.0}


def test_an_arm_cost_in_the_offer_catalogue_points_to_arm_costs(tmp_path) -> None:
    toml = tmp_path / "rebuy.toml"
    toml.write_text('[offers.catalogue."Mens E-Mail"]\ncost = 0.15\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"arm_costs"):
        load_config(toml)


def test_policy_table_lists_estimators_ips_snips_dr() -> None:
    rows = [
        {"policy": p, "method": m, "value": 1.0, "low": 0.0, "high": 2.0}
        for p in ("model", "everyone:none")
        for m in ("dr", "snips", "ips")
    ]
    cols = list(policy_table(pd.DataFrame(rows)).columns)
    assert cols == ["policy", *(f"{m}_{s}" for m in ("ips", "snips", "dr") for s in ("value", "low", "high"))]


def test_tables_are_full_width_when_not_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    from rich.table import Table

    t = Table("policy", "method", "value", "95% CI")
    t.add_row("everyone:" + "x" * 60, "snips", "0.7712345678", "[0.123456789, 0.987654321]")
    con = make_console()
    with con.capture() as cap:
        con.print(t)
    assert "0.7712345678" in cap.get() and "…" not in cap.get()
    monkeypatch.setenv("COLUMNS", "60")
    assert make_console().width == 60
