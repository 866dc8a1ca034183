"""Import of a past campaign export: roles, arm-share propensities, and every bad input.

Small hand-written exports; shares and means below are counted by hand from the rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from rebuy.campaign_import import import_campaign, read_campaign, roles_with, validate_campaign
from rebuy.config import CampaignImportConfig, Config, load_config
from rebuy.errors import DataError

# 3 x none, 2 x coupon, 1 x gift; German number format in 'basket'
EXPORT = (
    "kunde;basket;tier;offer;bought;spend\n"
    "007;10,5;gold;none;0;0\n"
    "008;20;silver;coupon;1;12,5\n"
    "009;;gold;none;1;30\n"
    "010;7,25;;gift;0;0\n"
    "011;3;silver;coupon;0;0\n"
    "012;1;bronze;none;0;0\n"
)


def roles(**kw: object) -> CampaignImportConfig:
    base = {
        "customer_id": "kunde",
        "arm": "offer",
        "control": "none",
        "outcomes": ["bought", "spend"],
        "min_rows_per_arm": 1,
        "dialect": {"delimiter": ";", "decimal": ","},
    }
    return CampaignImportConfig.model_validate({**base, **kw})


def setup(tmp_path: Path, text: str = EXPORT) -> tuple[Config, Path]:
    path = tmp_path / "campaign.csv"
    path.write_text(text, encoding="utf-8")
    return load_config(data_dir=tmp_path / "data"), path


def test_roles_types_and_arm_share_propensities(tmp_path: Path) -> None:
    cfg, path = setup(tmp_path)
    data = validate_campaign(cfg, path, roles())
    f = data.frame
    assert data.attributes == ["basket", "tier"]
    assert data.categorical == ["tier"] and data.numeric == ["basket"]
    assert f["customer_id"].tolist() == ["007", "008", "009", "010", "011", "012"]
    assert f["basket"].tolist()[:2] == [10.5, 20.0] and pd.isna(f.loc[2, "basket"])
    assert f["tier"].tolist() == ["gold", "silver", "gold", None, "silver", "bronze"]
    assert f["spend"].tolist() == [0.0, 12.5, 30.0, 0.0, 0.0, 0.0]
    assert data.arms == ["none", "coupon", "gift"] and data.control == "none"
    # no propensity column: shares 3/6, 2/6, 1/6
    assert data.randomisation_assumed
    expected = {"none": 0.5, "coupon": 2 / 6, "gift": 1 / 6}
    assert f[data.propensity].tolist() == pytest.approx([expected[a] for a in f[data.arm]])
    assert not (tmp_path / "data").exists()  # validation writes nothing


def test_logged_propensities_are_kept(tmp_path: Path) -> None:
    text = "offer,p,bought,x\nnone,0.5,0,1\ncoupon,0.25,1,2\ncoupon,1,0,3\n"
    cfg, path = setup(tmp_path, text)
    data = validate_campaign(
        cfg, path, CampaignImportConfig(propensity="p", outcomes=["bought"], arm="offer", min_rows_per_arm=1)
    )
    assert data.frame[data.propensity].tolist() == [0.5, 0.25, 1.0]
    assert not data.randomisation_assumed
    assert data.attributes == ["x"] and data.categorical == []


def test_import_writes_and_reads_back_by_name_and_path(tmp_path: Path) -> None:
    cfg, path = setup(tmp_path)
    data = import_campaign(cfg, path, "spring", roles())
    folder = cfg.paths.data_dir / "campaigns" / "spring"
    assert sorted(p.name for p in folder.iterdir()) == ["campaign.parquet", "roles.json"]
    for back in (read_campaign("spring", cfg), read_campaign(folder, cfg)):
        pd.testing.assert_frame_equal(back.frame, data.frame)
        assert (back.attributes, back.categorical, back.outcomes, back.arms) == (
            data.attributes,
            data.categorical,
            data.outcomes,
            data.arms,
        )
        assert back.randomisation_assumed and back.control == "none"
    with pytest.raises(DataError, match="import-campaign"):
        read_campaign("autumn", cfg)


def test_flags_override_config_roles(tmp_path: Path) -> None:
    cfg = load_config(data_dir=tmp_path)
    r = roles_with(cfg, arm="offer", control="ctl", outcomes=["y"], arms=None, delimiter=";", propensity=None)
    assert (r.arm, r.control, r.outcomes, r.dialect.delimiter) == ("offer", "ctl", ["y"], ";")
    assert r.min_rows_per_arm == cfg.import_.campaign.min_rows_per_arm


BAD = {
    "unknown arm": (EXPORT, {"arms": ["none", "coupon"]}, "unknown arm(s) ['gift']", "offer", [4]),
    "control arm missing": (EXPORT, {"control": "holdout"}, "control arm 'holdout'", "offer", None),
    "non-numeric outcome": (
        EXPORT.replace("010;7,25;;gift;0;0", "010;7,25;;gift;yes;0").replace(
            "012;1;bronze;none;0;0", "012;1;bronze;none;0;n/a"
        ),
        {},
        "non-numeric outcome",
        "spend",
        [6],
    ),
    "a word among numbers": (
        EXPORT.replace("008;20;silver;coupon;1;12,5", "008;20;silver;coupon;1;12,5 EUR"),
        {},
        "non-numeric outcome",
        "spend",
        [2],
    ),
    "a yes/no column with another word": (
        EXPORT.replace("basket;tier", "basket;vip;tier")
        .replace("007;10,5;", "007;10,5;yes;")
        .replace("008;20;", "008;20;no;")
        .replace("009;;", "009;;maybe;")
        .replace("010;7,25;", "010;7,25;yes;")
        .replace("011;3;", "011;3;no;")
        .replace("012;1;", "012;1;no;"),
        {"categorical": ["tier"]},
        "non-numbers",
        "vip",
        [3],
    ),
    "missing outcome": (
        EXPORT.replace("011;3;silver;coupon;0;0", "011;3;silver;coupon;;0"),
        {},
        "missing outcome",
        "bought",
        [5],
    ),
    "too few rows": (EXPORT, {"min_rows_per_arm": 2}, "too few rows", "offer", None),
    "missing column": (
        EXPORT,
        {"outcomes": ["bought", "revenue"]},
        "missing column(s) ['revenue']",
        "revenue",
        None,
    ),
    "duplicate customer": (EXPORT.replace("011;", "007;"), {}, "more than once", "kunde", [1, 5]),
    "numeric attribute with text": (
        EXPORT.replace("011;3;", "011;drei;"),
        {"categorical": ["tier"]},
        "non-numbers",
        "basket",
        [5],
    ),
    "header only": ("kunde;basket;tier;offer;bought;spend\n", {}, "no data rows", None, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_campaign_is_a_clear_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    text, overrides, needle, column, rows = BAD[case]
    cfg, good = setup(tmp_path)
    import_campaign(cfg, good, "spring", roles())
    folder = cfg.paths.data_dir / "campaigns" / "spring"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        import_campaign(cfg, bad, "spring", roles(**overrides))
    exc = err.value
    assert needle in str(exc) and exc.hint
    assert exc.file == str(bad)
    if column is not None:
        assert exc.column == column
    if rows is not None:
        assert exc.row_numbers == rows
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["spring"]


@pytest.mark.parametrize("value", ["0", "1,5", "-0,2", ""])
def test_propensities_outside_zero_one_are_rejected(tmp_path: Path, value: str) -> None:
    text = "offer;p;bought\nnone;0,5;0\ncoupon;" + value + ";1\n"
    cfg, path = setup(tmp_path, text)
    with pytest.raises(DataError, match=r"outside \(0, 1\]") as err:
        validate_campaign(cfg, path, roles(customer_id=None, propensity="p", outcomes=["bought"]))
    assert err.value.row_numbers == [2]


def test_cli_imports_and_reports_assumed_randomisation(tmp_path: Path) -> None:
    cfg, path = setup(tmp_path)
    args = [
        "import-campaign",
        str(path),
        "--data-dir",
        str(tmp_path / "data"),
        "--arm",
        "offer",
        "--outcome",
        "bought",
        "--outcome",
        "spend",
        "--customer-id",
        "kunde",
        "--min-rows",
        "1",
        "--delimiter",
        ";",
        "--decimal",
        ",",
    ]
    res = CliRunner().invoke(app, [*args, "--check"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "data").exists()
    res = CliRunner().invoke(app, [*args, "--name", "spring"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "randomisation assumed" in said and "coupon" in said
    assert read_campaign("spring", cfg).frame.shape[0] == 6
    res = CliRunner().invoke(app, [*args, "--control", "holdout", "--name", "autumn"])
    assert res.exit_code != 0 and "control arm 'holdout'" in " ".join(res.output.split())
    assert not (tmp_path / "data" / "campaigns" / "autumn").exists()


def test_yes_no_columns_are_read_as_one_and_zero(tmp_path: Path) -> None:
    """The simulator's CSV writes converted as True/False; shops write yes/no, Y/N or 1/0."""
    text = (
        "arm,converted,clicked,vip,spend\n"
        "none,True,yes,Y,0\n"
        "coupon,False,NO,n,12.5\n"
        "coupon, true ,,1,3\n"
        "none,FALSE,Yes,0,0\n"
    )
    cfg, path = setup(tmp_path, text)
    roles = CampaignImportConfig(outcomes=["converted", "spend"], min_rows_per_arm=1)
    data = validate_campaign(cfg, path, roles)
    assert data.frame["converted"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert data.frame["spend"].tolist() == [0.0, 12.5, 3.0, 0.0]
    # yes/no attributes are numbers too (a missing one stays missing), not two-level categories
    assert data.categorical == [] and data.numeric == ["clicked", "vip"]
    assert data.frame["vip"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert data.frame["clicked"].tolist()[:2] == [1.0, 0.0] and pd.isna(data.frame.loc[2, "clicked"])
    # a yes/no outcome must still be filled in: an empty cell is not a "no"
    cfg, path = setup(tmp_path, text.replace("coupon, true ,", "coupon,,"))
    with pytest.raises(DataError, match="missing outcome") as err:
        validate_campaign(cfg, path, roles)
    assert err.value.column == "converted" and err.value.row_numbers == [3]


def test_boolean_parquet_outcome(tmp_path: Path) -> None:
    path = tmp_path / "campaign.parquet"
    pd.DataFrame(
        {"arm": ["none", "a", "a"], "converted": [True, False, True], "x": [1.0, 2.0, 3.0]}
    ).to_parquet(path)
    cfg = load_config(data_dir=tmp_path / "data")
    data = validate_campaign(cfg, path, CampaignImportConfig(outcomes=["converted"], min_rows_per_arm=1))
    assert data.frame["converted"].tolist() == [1.0, 0.0, 1.0]


def test_a_customer_id_column_is_the_id_not_an_attribute(tmp_path: Path) -> None:
    text = "customer_id,arm,converted,age\n01,none,0,30\n02,coupon,1,40\n"
    cfg, path = setup(tmp_path, text)
    data = validate_campaign(cfg, path, CampaignImportConfig(min_rows_per_arm=1))
    assert data.attributes == ["age"]
    assert data.frame["customer_id"].tolist() == ["01", "02"]
    assert data.arms == ["none", "coupon"] and data.outcomes == ["converted"]
