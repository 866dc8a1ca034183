"""Import of a shop's own exports: dialects, ids, time zones, returns, and every bad input.

Expected values are worked out by hand from the rows written in each test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.app import app
from rebuy.config import Config, load_config
from rebuy.contract import SCHEMAS, TABLES, UTC_TS, empty
from rebuy.errors import DataError
from rebuy.ingest import (
    Sources,
    derive_order_ids,
    import_inputs,
    read_canonical,
    validate_inputs,
    write_canonical,
)

DATA = Path(__file__).parent / "data"
AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def setup(tmp_path: Path, files: dict[str, str], toml: str = "") -> tuple[Config, Sources]:
    """Write the given CSV texts (table -> content) and a rebuy.toml; return config and sources."""
    (tmp_path / "rebuy.toml").write_text(toml)
    cfg = load_config(tmp_path / "rebuy.toml", data_dir=tmp_path / "data")
    paths = {}
    for table, text in files.items():
        path = tmp_path / f"{table}.csv"
        path.write_text(text, encoding="utf-8")
        paths[table] = path
    return cfg, Sources(**paths)


ORDERS = (
    "customer_id,order_id,ordered_at,amount\n"
    "007,o1,2024-03-01T10:00:00+01:00,10.5\n"
    "007,o2,2024-04-01T10:00:00Z,20\n"
    "8,o3,2024-05-01 12:00:00+02:00,5\n"
)


# --- canonical tables on disk -------------------------------------------------------------------


def test_canonical_round_trip_keeps_ids_and_utc(tmp_path: Path) -> None:
    orders = pd.DataFrame(
        {
            "order_id": ["01", "02"],
            "customer_id": ["007", "7"],
            "ordered_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00"], utc=True),
            "amount": [1.0, 2.5],
        }
    )
    write_canonical({"orders": orders}, tmp_path)
    tables = read_canonical(tmp_path)
    assert set(tables) == set(TABLES)
    assert tables["orders"]["customer_id"].tolist() == ["007", "7"]
    assert tables["orders"]["ordered_at"].dtype == UTC_TS
    assert tables["orders"]["returned_amount"].tolist() == [0.0, 0.0]
    # customers derived: first order = signup, no consent assumed
    cust = tables["customers"].set_index("customer_id")
    assert cust.loc["007", "signup_at"] == utc("2024-01-01 10:00")
    assert not cust[["consent_email", "consent_sms", "consent_push"]].to_numpy().any()
    assert tables["events"].empty and list(tables["events"].columns) == list(empty("events").columns)
    for table in TABLES:
        SCHEMAS[table].validate(tables[table])


def test_read_canonical_without_orders_says_run_import(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="rebuy import"):
        read_canonical(tmp_path)


def test_failed_write_leaves_previous_canonical_untouched(tmp_path: Path) -> None:
    good = pd.DataFrame(
        {
            "order_id": ["a"],
            "customer_id": ["1"],
            "ordered_at": [utc("2024-01-01")],
            "amount": [3.0],
        }
    )
    target = write_canonical({"orders": good}, tmp_path)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(DataError, match="amount"):
        write_canonical({"orders": good.assign(amount=[-1.0])}, tmp_path)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["canonical"]  # no temp dirs left behind


# --- good inputs ----------------------------------------------------------------------------------


def test_iso_timestamps_with_mixed_offsets_go_to_utc(tmp_path: Path) -> None:
    cfg, src = setup(tmp_path, {"orders": ORDERS})
    orders = validate_inputs(cfg, src, AS_OF).tables["orders"]
    assert orders["ordered_at"].tolist() == [
        utc("2024-03-01 09:00"),
        utc("2024-04-01 10:00"),
        utc("2024-05-01 10:00"),
    ]
    assert orders["customer_id"].tolist() == ["007", "007", "8"]
    assert orders["amount"].tolist() == [10.5, 20.0, 5.0]
    assert not (tmp_path / "data").exists()  # validate writes nothing


def test_orders_only_german_export_imports_end_to_end_and_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    res = runner.invoke(
        app,
        [
            "import",
            "-c",
            str(DATA / "shop_orders_de.toml"),
            "--data-dir",
            str(data),
            "--orders",
            str(DATA / "shop_orders_de.csv"),
            "--as-of",
            "2025-01-01",
        ],
    )
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "derived from" in said and "consents default to False" in said
    tables = read_canonical(data)
    orders = tables["orders"].set_index("order_id")
    # the return A-4 is not an order; it is booked on the customer's latest earlier order A-3
    assert list(orders.index) == ["A-1", "A-2", "A-3"]
    assert orders["customer_id"].tolist() == ["007", "007", "0042"]
    assert orders["amount"].tolist() == [12.5, 1234.0, 7.0]
    assert orders["returned_amount"].tolist() == [0.0, 0.0, 7.0]
    assert orders["category"].tolist() == ["Schuhe", "Taschen", "Schuhe"]
    # Berlin: winter +01:00, summer +02:00; 02:30 on 2024-03-31 does not exist -> 03:00 CEST
    assert orders["ordered_at"].tolist() == [
        utc("2024-01-03 09:15"),
        utc("2024-06-20 08:00"),
        utc("2024-03-31 01:00"),
    ]
    cust = tables["customers"].set_index("customer_id")
    assert cust.loc["0042", "signup_at"] == utc("2024-03-31 01:00")
    assert cust.loc["007", "signup_at"] == utc("2024-01-03 09:15")
    assert tables["events"].empty
    canon = data / "canonical"
    res = runner.invoke(
        app,
        [
            "validate",
            "--data-dir",
            str(tmp_path / "other"),
            "--as-of",
            "2025-01-01",
            "--orders",
            str(canon / "orders.parquet"),
            "--customers",
            str(canon / "customers.parquet"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "other").exists()


def test_order_ids_are_derived_deterministically(tmp_path: Path) -> None:
    text = (
        "customer_id,ordered_at,amount\n"
        "1,2024-01-01T00:00:00Z,5\n"
        "1,2024-01-01T00:00:00Z,5\n"  # a genuine second identical order
        "2,2024-01-01T00:00:00Z,5\n"
    )
    cfg, src = setup(tmp_path, {"orders": text})
    first = validate_inputs(cfg, src, AS_OF)
    ids = first.tables["orders"]["order_id"].tolist()
    assert len(set(ids)) == 3
    assert validate_inputs(cfg, src, AS_OF).tables["orders"]["order_id"].tolist() == ids
    assert "order_id" in first.derived["orders"]
    # the id depends on the amount's value, not on how the export spelled it
    df = first.tables["orders"]
    assert derive_order_ids(df).tolist() == ids
    assert derive_order_ids(df.assign(amount=[5.0, 5.0, 6.0])).tolist()[2] != ids[2]


def test_header_less_file_uses_column_order(tmp_path: Path) -> None:
    toml = (
        '[import.dialect]\nheader = false\ntimezone = "UTC"\n'
        '[import.orders]\ncolumn_order = ["amount", "customer_id", "ordered_at"]\n'
    )
    cfg, src = setup(tmp_path, {"orders": "3.5,0001,2024-02-02 08:00\n"}, toml)
    orders = validate_inputs(cfg, src, AS_OF).tables["orders"]
    assert orders.loc[0, ["customer_id", "amount"]].tolist() == ["0001", 3.5]
    assert orders.loc[0, "ordered_at"] == utc("2024-02-02 08:00")


def test_events_are_mapped_and_customers_file_read(tmp_path: Path) -> None:
    files = {
        "orders": ORDERS,
        "customers": (
            "customer_id,signup_at,consent_email,birthday\n"
            "007,2024-01-01T00:00:00Z,yes,1990-05-17\n8,2024-02-01T00:00:00Z,0,\n"
        ),
        "events": (
            "customer_id,occurred_at,event_type\n"
            "007,2024-02-01T00:00:00Z,pageview\n8,2024-02-02T00:00:00Z,cart\n"
        ),
    }
    toml = '[import]\nevent_type_map = { pageview = "view" }\n'
    cfg, src = setup(tmp_path, files, toml)
    res = validate_inputs(cfg, src, AS_OF)
    assert res.tables["events"]["event_type"].tolist() == ["view", "cart"]
    cust = res.tables["customers"].set_index("customer_id")
    assert cust["consent_email"].tolist() == [True, False]
    assert cust["consent_sms"].tolist() == [False, False]
    assert cust.loc["007", "birthday"] == pd.Timestamp("1990-05-17")
    assert pd.isna(cust.loc["8", "birthday"])


def test_parquet_sources_with_integer_ids_become_text(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "customer_id": [7, 8],
            "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.0, 2.0],
        }
    )
    df.to_parquet(tmp_path / "o.parquet")
    cfg = load_config(data_dir=tmp_path / "d")
    with pytest.raises(DataError, match="without a time zone"):
        validate_inputs(cfg, Sources(orders=tmp_path / "o.parquet"), AS_OF)
    df.assign(ordered_at=df["ordered_at"].dt.tz_localize("UTC")).to_parquet(tmp_path / "o.parquet")
    orders = validate_inputs(cfg, Sources(orders=tmp_path / "o.parquet"), AS_OF).tables["orders"]
    assert orders["customer_id"].tolist() == ["7", "8"]


# --- bad inputs: a clear error, a non-zero exit, nothing written --------------------------------

BAD = {
    "missing file": ({}, "", "file not found", None, None),
    "empty file": ({"orders": ""}, "", "empty", None, None),
    "header only": ({"orders": "customer_id,ordered_at,amount\n"}, "", "no data rows", None, None),
    "missing column": (
        {"orders": "customer_id,ordered_at\n1,2024-01-01T00:00:00Z\n"},
        "",
        "amount",
        "amount",
        None,
    ),
    "wrong type": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,2024-01-02T00:00:00Z,five\n"},
        "",
        "not numbers",
        "amount",
        [2],
    ),
    "unparseable date": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,yesterday,5\n"},
        "",
        "unparseable timestamps",
        "ordered_at",
        [2],
    ),
    "naive without zone": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,2024-01-02 10:00,5\n"},
        "",
        "without a time zone",
        "ordered_at",
        [2],
    ),
    "duplicate order_id": (
        {
            "orders": "customer_id,order_id,ordered_at,amount\n1,x,2024-01-01T00:00:00Z,5\n"
            "2,y,2024-01-01T00:00:00Z,5\n3,x,2024-01-02T00:00:00Z,5\n"
        },
        "",
        "duplicate order_id",
        "order_id",
        [1, 3],
    ),
    "NaN amount": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,2024-01-02T00:00:00Z,\n"},
        "",
        "missing values",
        "amount",
        [2],
    ),
    "negative amount rejected": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,2024-01-02T00:00:00Z,-5\n"},
        "",
        "negative amounts",
        "amount",
        [2],
    ),
    "order before signup": (
        {
            "orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n2,2024-01-01T00:00:00Z,5\n",
            "customers": "customer_id,signup_at\n1,2023-12-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n",
        },
        "",
        "before the customer's signup_at",
        "ordered_at",
        [2],
    ),
    "after as-of": (
        {"orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n1,2025-01-01T00:00:01Z,5\n"},
        "",
        "after --as-of",
        "ordered_at",
        [2],
    ),
    "unknown event_type": (
        {
            "orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n",
            "events": "customer_id,occurred_at,event_type\n1,2024-01-01T00:00:00Z,view\n1,2024-01-01T00:00:00Z,wish\n",
        },
        "",
        "unknown event types ['wish']",
        "event_type",
        [2],
    ),
    "customer not in customers": (
        {
            "orders": "customer_id,ordered_at,amount\n1,2024-01-01T00:00:00Z,5\n01,2024-01-01T00:00:00Z,5\n",
            "customers": "customer_id,signup_at\n1,2023-12-01T00:00:00Z\n",
        },
        "",
        "customers not in the customers file",
        "customer_id",
        [2],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    files, toml, needle, column, rows = BAD[case]
    cfg, src = setup(tmp_path, files, toml)
    if case == "missing file":
        src = Sources(orders=tmp_path / "nope.csv")
    # a previous good import must survive the failed one byte for byte
    prior = pd.DataFrame(
        {"order_id": ["p"], "customer_id": ["9"], "ordered_at": [utc("2023-01-01")], "amount": [1.0]}
    )
    canon = write_canonical({"orders": prior}, cfg.paths.data_dir)
    before = {p.name: p.read_bytes() for p in canon.iterdir()}
    with pytest.raises(DataError) as err:
        import_inputs(cfg, src, AS_OF)
    exc = err.value
    assert needle in str(exc)
    assert exc.hint  # says what to do
    assert exc.file is not None and Path(exc.file).name.endswith((".csv", "nope.csv"))
    if column is not None:
        assert column in (exc.column or "")
    if rows is not None:
        assert exc.row_numbers == rows
        assert exc.rows is not None and list(exc.rows.index) == rows
    assert {p.name: p.read_bytes() for p in canon.iterdir()} == before
    assert sorted(p.name for p in cfg.paths.data_dir.iterdir()) == ["canonical"]


def test_all_problems_of_a_pass_are_reported_together(tmp_path: Path) -> None:
    text = "customer_id,order_id,ordered_at,amount\n1,x,2024-01-01T00:00:00Z,\n2,x,2024-01-01T00:00:00Z,5\n"
    cfg, src = setup(tmp_path, {"orders": text})
    with pytest.raises(DataError) as err:
        validate_inputs(cfg, src, AS_OF)
    message = str(err.value)
    assert "duplicate order_id" in message and "missing values" in message


def test_return_without_earlier_order_is_an_error(tmp_path: Path) -> None:
    text = "customer_id,ordered_at,amount\n1,2024-01-02T00:00:00Z,5\n2,2024-01-01T00:00:00Z,-5\n"
    cfg, src = setup(tmp_path, {"orders": text}, '[import]\nreturns = "returned_amount"\n')
    with pytest.raises(DataError, match="no earlier order") as err:
        validate_inputs(cfg, src, AS_OF)
    assert err.value.row_numbers == [2]


def test_undecodable_file_names_the_encoding(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_bytes(
        "customer_id,ordered_at,amount\nM\u00fcller,2024-01-01T00:00:00Z,5\n".encode("cp1252")
    )
    cfg = load_config(data_dir=tmp_path / "d")
    with pytest.raises(DataError, match="encoding"):
        validate_inputs(cfg, Sources(orders=tmp_path / "o.csv"), AS_OF)
    cfg = load_config(data_dir=tmp_path / "d").model_copy(deep=True)
    cfg.import_.dialect.encoding = "cp1252"
    orders = validate_inputs(cfg, Sources(orders=tmp_path / "o.csv"), AS_OF).tables["orders"]
    assert orders["customer_id"].tolist() == ["M\u00fcller"]


def test_cli_bad_input_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("customer_id,ordered_at,amount\n1,2024-01-01 10:00,5\n")
    res = CliRunner().invoke(
        app,
        [
            "import",
            "--data-dir",
            str(tmp_path / "d"),
            "--orders",
            str(tmp_path / "o.csv"),
            "--as-of",
            "2025-01-01",
        ],
    )
    assert res.exit_code != 0
    assert "without a time zone" in res.output and "timezone" in res.output
    assert not (tmp_path / "d" / "canonical").exists()
    res = CliRunner().invoke(app, ["validate", "--data-dir", str(tmp_path / "d"), "--as-of", "2025-01-01"])
    assert res.exit_code != 0 and "orders" in res.output


def test_customer_time_zones_must_be_iana_names(tmp_path: Path) -> None:
    files = {
        "orders": "customer_id,ordered_at,amount\n1,2024-01-02T00:00:00Z,5\n2,2024-01-02T00:00:00Z,5\n",
        "customers": "customer_id,signup_at,timezone\n1,2024-01-01T00:00:00Z,Europe/Berlin\n"
        "2,2024-01-01T00:00:00Z,CET+1\n",
    }
    cfg, src = setup(tmp_path, files)
    with pytest.raises(DataError, match="unknown time zone names") as err:
        validate_inputs(cfg, src, AS_OF)
    assert err.value.row_numbers == [2]


def test_events_of_customers_without_orders_are_kept_and_counted(tmp_path: Path) -> None:
    files = {
        "orders": "customer_id,ordered_at,amount\n1,2024-01-02T00:00:00Z,5\n",
        "events": "customer_id,occurred_at,event_type\n1,2024-01-01T00:00:00Z,view\n"
        "v9,2024-01-01T00:00:00Z,view\nv9,2024-01-01T01:00:00Z,cart\n",
    }
    cfg, src = setup(tmp_path, files)
    res = validate_inputs(cfg, src, AS_OF)
    assert res.tables["events"]["customer_id"].tolist() == ["1", "v9", "v9"]
    assert any("2 event(s) of 1 customer(s) not in customers" in n for n in res.notes)


def test_excel_style_csv_with_bom_and_padded_headers(tmp_path: Path) -> None:
    text = "\ufeffcustomer_id , ordered_at,amount\n007,2024-01-01T00:00:00Z,5\n"
    (tmp_path / "o.csv").write_bytes(text.encode("utf-8"))
    cfg = load_config(data_dir=tmp_path / "d")
    orders = validate_inputs(cfg, Sources(orders=tmp_path / "o.csv"), AS_OF).tables["orders"]
    assert orders["customer_id"].tolist() == ["007"]


ID_TEXT = st.one_of(
    st.from_regex(r"\A0[0-9]{1,6}\Z"),  # leading zeros
    st.sampled_from(["NA", "null", "nan", "1e3", "1,5", " x", "True"]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(ID_TEXT, min_size=1, max_size=8))
def test_any_id_text_survives_csv_import_exactly(tmp_path: Path, ids: list[str]) -> None:
    """Ids are never parsed: "007", "1e3", "NA", " x" and unicode come back as written."""
    df = pd.DataFrame({"customer_id": ids, "ordered_at": "2024-01-01T00:00:00Z", "amount": 1.0})
    path = tmp_path / "orders.csv"
    df.to_csv(path, index=False)
    cfg = load_config(data_dir=tmp_path / "d")
    res = validate_inputs(cfg, Sources(orders=path), AS_OF)
    assert res.tables["orders"]["customer_id"].tolist() == ids
    assert sorted(res.tables["customers"]["customer_id"]) == sorted(set(ids))


def test_cli_takes_paths_from_config_and_format_flag(tmp_path: Path) -> None:
    orders = tmp_path / "orders.export"  # no telling suffix: the format comes from --format
    pd.DataFrame({"customer_id": ["01"], "ordered_at": [utc("2024-01-01")], "amount": [2.0]}).to_parquet(
        orders
    )
    (tmp_path / "rebuy.toml").write_text(f'[import.orders]\npath = "{orders}"\n')
    base = [
        "import",
        "-c",
        str(tmp_path / "rebuy.toml"),
        "--data-dir",
        str(tmp_path / "d"),
        "--as-of",
        "2025-01-01",
    ]
    res = CliRunner().invoke(app, base)
    assert res.exit_code != 0 and "--format parquet" in " ".join(res.output.split())
    res = CliRunner().invoke(app, [*base, "--format", "parquet"])
    assert res.exit_code == 0, res.output
    assert read_canonical(tmp_path / "d")["orders"]["customer_id"].tolist() == ["01"]
