"""`rebuy import-decisions`: past randomized decisions into the decision log, validated, all or nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines import decision_log as dlog
from pipelines.decision_import import validate_decisions
from rebuy.config import Config, load_config
from rebuy.errors import DataError
from rebuy.ingest import write_canonical

T0 = pd.Timestamp("2025-03-01 00:00", tz="UTC")
AS_OF = pd.Timestamp("2025-03-20", tz="UTC")
HALF = json.dumps({"none": 0.5, "coupon_10pct": 0.5})


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3"],
            "customer_id": ["a", "b", "c"],
            "decided_at": ["2025-03-01T00:00:00Z"] * 3,
            "offer": ["coupon_10pct", "none", "none"],
            "propensity": [0.5, 0.5, 1.0],
            "distribution": [HALF, HALF, json.dumps({"none": 1.0})],
        }
    )


def _err(df: pd.DataFrame, **kw: object) -> DataError:
    with pytest.raises(DataError) as e:
        validate_decisions(df, Config(), AS_OF, file="past.csv", **kw)  # type: ignore[arg-type]
    return e.value


def test_valid_rows_get_the_log_defaults() -> None:
    d = validate_decisions(_rows(), Config(), AS_OF, file="past.csv")
    assert list(d["decided_at"]) == [T0] * 3
    assert d.loc[0, "distribution"] == {"none": 0.5, "coupon_10pct": 0.5}
    # optional columns: control for `none`, the offer's configured channel, the file's stem as campaign
    assert list(d["group"]) == ["treatment", "control", "control"]
    assert d.loc[0, "channel"] == "email" and d.loc[1, "channel"] == "none"
    assert set(d["campaign"]) == {"past"} and d.loc[0, "note"] == "imported from past.csv"


@pytest.mark.parametrize(
    ("change", "column", "words"),
    [
        (lambda d: d.drop(columns="propensity"), "propensity", "missing required columns"),
        (lambda d: d.assign(decision_id=["d1", "d1", "d3"]), "decision_id", "duplicate"),
        (lambda d: d.assign(decided_at="2025-03-01 00:00:00"), "decided_at", "time zone"),
        (lambda d: d.assign(decided_at="2025-04-01T00:00:00Z"), "decided_at", "after --as-of"),
        (lambda d: d.assign(offer=["coupon_20pct", "none", "none"]), "offer", "not in the catalogue"),
        (lambda d: d.assign(propensity=[0.0, 0.5, 1.0]), "propensity", "(0, 1]"),
        # the chosen offer's propensity must be what the distribution gave it
        (lambda d: d.assign(propensity=[0.4, 0.5, 1.0]), "distribution", "sum to 1"),
        (
            lambda d: d.assign(distribution=[json.dumps({"none": 0.5, "coupon_10pct": 0.6})] * 3),
            "distribution",
            "",
        ),
        (lambda d: d.assign(distribution=["{not json"] * 3), "distribution", "not JSON"),
    ],
)
def test_bad_rows_are_refused_with_the_column(change, column, words) -> None:
    e = _err(change(_rows()))
    assert e.column == column and words in e.problem and e.file == "past.csv"


def test_unknown_customers_are_refused() -> None:
    e = _err(_rows(), known_customers=pd.Series(["a", "b"]))
    assert e.column == "customer_id" and "c" in str(e)


def _shop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    customers = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "signup_at": pd.to_datetime(["2025-01-01"] * 3, utc=True)}
    )
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "customer_id": ["a", "b"],
            "ordered_at": pd.to_datetime(["2025-01-02", "2025-03-05"], utc=True),
            "amount": [20.0, 30.0],
        }
    )
    write_canonical({"customers": customers, "orders": orders}, tmp_path)


def test_cli_writes_once_marks_sent_and_writes_nothing_on_error(tmp_path) -> None:
    cfg = load_config(None, data_dir=tmp_path)
    _shop(tmp_path)
    bad = tmp_path / "bad.csv"
    _rows().assign(offer=["coupon_20pct", "none", "none"]).to_csv(bad, index=False)
    args = ["--data-dir", str(tmp_path), "--as-of", "2025-03-20"]
    r = CliRunner().invoke(app, ["import-decisions", str(bad), *args])
    assert r.exit_code == 2 and "not in the catalogue" in r.output
    assert not (tmp_path / "decisions.db").exists()  # validated before the log is even opened

    good = tmp_path / "past.csv"
    _rows().to_csv(good, index=False)
    for written in ("3 written", "0 written"):  # a rerun changes nothing
        r = CliRunner().invoke(app, ["import-decisions", str(good), *args])
        assert r.exit_code == 0 and written in r.output, r.output
    with dlog.connect(cfg.decision_log_url) as engine, engine.connect() as conn:
        d = dlog.read_decisions(conn).set_index("decision_id")
        box = dlog.read_outbox(conn)
        pending = dlog.pending(conn)
    assert list(d.index) == ["d1", "d2", "d3"] and d.loc["d1", "propensity"] == 0.5
    # the one message (d1: a coupon to a treated customer) was sent in the past: nothing left to deliver
    assert list(box["decision_id"]) == ["d1"] and list(box["status"]) == ["sent"] and pending == []
