"""Learning from a past campaign: same learners and evaluation, a report, a recommendation that matches truth."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from rebuy.campaign_import import CampaignData
from rebuy.config import Config
from tests.offer.synth import make_campaign
from training.campaign import learn_campaign, write_report
from training.offer_plots import _ticks, svg_intervals, svg_lines


def _campaign(n: int, seed: int, scenario: str) -> tuple[CampaignData, dict]:
    d = make_campaign(n, seed, scenario=scenario)
    f = d["X"].copy()
    f["arm"] = d["arm"]
    f["propensity"] = d["propensity"]
    f["converted"] = d["outcomes"]["conversion"]
    f["spend"] = d["outcomes"]["spend"]
    data = CampaignData(
        f,
        ["x1", "x2", "seg"],
        ["seg"],
        "arm",
        "none",
        "propensity",
        ["converted", "spend"],
        ["A", "B", "none"],
        True,
        name=scenario,
    )
    return data, d


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("personalise", "personalise"),
        ("one_arm", "best_arm"),
        ("nothing", "nothing"),
    ],
)
def test_recommendation_matches_truth_and_effects_cover_truth(scenario: str, expected: str) -> None:
    data, d = _campaign(9000, {"personalise": 21, "one_arm": 22, "nothing": 23}[scenario], scenario)
    report = learn_campaign(data, None, primary="converted")
    rec = report.recommendation
    assert rec["action"] == expected, rec
    if expected == "best_arm":
        assert rec["arm"] == "A"
    # per-arm effects on conversion: simultaneous intervals cover the true average effect
    eff = report.outcomes["converted"].effects.set_index("arm")
    for arm in ("A", "B"):
        true_ate = float((d["p"][arm] - d["p"]["none"]).mean())
        assert eff.loc[arm, "sim_low"] <= true_ate <= eff.loc[arm, "sim_high"], (arm, true_ate)
    # both learners were compared, on every outcome
    for ev in report.outcomes.values():
        assert set(ev.selection.scores["learner"]) == {"t", "x"}
        assert {"personalised", "everyone:none", "everyone:A", "everyone:B"} <= set(ev.policies["policy"])
        assert set(ev.policies["method"]) == {"ips", "snips", "dr"}


def test_costs_are_subtracted_from_money_outcomes_only() -> None:
    data, _ = _campaign(3000, 5, "one_arm")
    cfg = Config()
    data.frame["arm"] = data.frame["arm"].map({"A": "wake_up_gift", "B": "coupon_10pct", "none": "none"})
    data = CampaignData(
        data.frame,
        data.attributes,
        data.categorical,
        "arm",
        "none",
        "propensity",
        data.outcomes,
        ["wake_up_gift", "coupon_10pct", "none"],
        True,
    )
    report = learn_campaign(data, cfg.offers, primary="spend")
    assert report.outcomes["spend"].costs["wake_up_gift"] == cfg.offers.catalogue["wake_up_gift"].cost
    assert set(report.outcomes["converted"].costs.values()) == {0.0}


def test_report_files(tmp_path) -> None:
    data, _ = _campaign(3000, 6, "personalise")
    report = learn_campaign(data, None)
    assert report.primary == "spend"  # the first non-binary outcome
    files = write_report(report, tmp_path)
    doc = json.loads(files["json"].read_text())
    assert doc["randomisation_assumed"] is True
    assert doc["recommendation"]["action"] in {"personalise", "best_arm", "nothing"}
    arms = {r["arm"] for r in doc["outcomes"]["converted"]["arm_effects"]}
    assert arms == {"A", "B"}
    page = files["html"].read_text()
    assert "randomisation is assumed" in page
    # four plots per outcome (effects, Qini, cumulative uplift, policy values), each well-formed SVG
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 8
    for svg in svgs:
        ET.fromstring(svg)


def test_cli_import_then_report_logs_to_mlflow(tmp_path) -> None:
    data, _ = _campaign(2400, 8, "personalise")
    csv = tmp_path / "spring.csv"
    data.frame.drop(columns=["propensity"]).to_csv(csv, index=False)
    runner = CliRunner()
    dd = str(tmp_path / "data")
    r = runner.invoke(
        app,
        [
            "import-campaign",
            str(csv),
            "--name",
            "spring",
            "--data-dir",
            dd,
            "--control",
            "none",
            "--outcome",
            "converted",
            "--outcome",
            "spend",
            "--categorical",
            "seg",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "campaign", "spring", "--data-dir", dd])
    assert r.exit_code == 0, r.output
    out = tmp_path / "data" / "reports" / "campaigns" / "spring"
    assert (out / "campaign_report.html").is_file()
    doc = json.loads((out / "campaign_report.json").read_text())
    assert doc["rows"] == 2400

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["rebuy-campaigns"])
    assert len(runs) == 1 and runs["params.recommendation"].iloc[0] == doc["recommendation"]["action"]


def test_unseen_category_scores(tmp_path) -> None:
    data, _ = _campaign(3000, 9, "personalise")
    report = learn_campaign(data, None)
    model = report.outcomes["spend"].selection.model
    new = pd.DataFrame({"x1": [0.7], "x2": [0.1], "seg": ["brand-new"]})
    out = model.predict(model.encoder.transform(new))
    assert np.isfinite(out["A"][0]).all()


def test_ticks_are_round_numbers_covering_the_range() -> None:
    assert _ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # span 0.55 -> raw step 0.11 -> 0.2; first tick at ceil(-0.13 / 0.2) * 0.2 = 0 (not -0.0)
    assert _ticks(-0.13, 0.42) == [0.0, 0.2, 0.4]
    assert _ticks(-30.0, 70.0) == [-20.0, 0.0, 20.0, 40.0, 60.0]


def test_svg_intervals_places_values_on_the_axis() -> None:
    rows = pd.DataFrame({"label": ["A", "B<&"], "value": [0.0, 0.5], "low": [-1.0, 0.0], "high": [1.0, 1.0]})
    svg = svg_intervals(rows, "effect", [("low", "high", "95%")])
    root = ET.fromstring(svg)  # labels are escaped
    ns = "{http://www.w3.org/2000/svg}"
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{ns}circle")]
    # range [-1, 1] padded by 5% each side -> [-1.1, 1.1] over x in [150, 600]: 0 -> 375, 0.5 -> 477.3
    assert dots == [(375.0, 44.0), (pytest.approx(477.3, abs=0.05), 70.0)]  # rows 26 px apart
    assert "B&lt;&amp;" in svg


def test_svg_lines_thins_long_curves_and_skips_gaps() -> None:
    x = np.linspace(0, 1, 10_001)
    y = np.where(x < 0.1, np.nan, x)
    svg = svg_lines({"A": (x, y)}, "share", "uplift", points=101)
    (line,) = ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}polyline")
    # 101 evenly spaced of 10,001 points, minus the 10 that fall where y is NaN (x < 0.1)
    assert len(line.get("points").split()) == 91
