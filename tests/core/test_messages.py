"""The `messages` table (sends only): contract, import with its bad inputs, rebuy's own sends read once.

Expected values are worked out by hand from the rows written in each test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from rebuy.config import Config, load_config
from rebuy.contract import ARROW_STR, SCHEMAS, UTC_TS, empty
from rebuy.errors import DataError
from rebuy.ingest import (
    SENT_MESSAGES,
    Sources,
    append_sent_messages,
    import_inputs,
    read_canonical,
    union_messages,
    validate_inputs,
    write_canonical,
)

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
ORDERS = "customer_id,ordered_at,amount\n007,2024-03-01T10:00:00Z,10.5\n8,2024-05-01T12:00:00Z,5\n"
MESSAGES = (
    "message_id,customer_id,sent_at,channel,source,campaign\n"
    "m1,007,2024-03-07T09:00:00+01:00,email,newsletter,nl-2024-03-07\n"
    "m2,8,2024-03-07T09:00:00Z,email,newsletter,nl-2024-03-07\n"
    "m3,007,2024-04-01T18:00:00Z,sms,import,spring_sale\n"
)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def setup(tmp_path: Path, files: dict[str, str]) -> tuple[Config, Sources]:
    cfg = load_config(data_dir=tmp_path / "data")
    paths = {}
    for table, text in files.items():
        path = tmp_path / f"{table}.csv"
        path.write_text(text, encoding="utf-8")
        paths[table] = path
    return cfg, Sources(**paths)


def test_empty_messages_is_canonical() -> None:
    m = empty("messages")
    assert list(m.columns) == [
        "message_id",
        "customer_id",
        "sent_at",
        "channel",
        "source",
        "campaign",
        "offer",
    ]
    assert m["message_id"].dtype == ARROW_STR and m["sent_at"].dtype == UTC_TS
    assert isinstance(m["channel"].dtype, pd.CategoricalDtype)
    SCHEMAS["messages"].validate(m)


def test_messages_import_to_utc_compact_columns_and_read_back(tmp_path: Path) -> None:
    cfg, src = setup(tmp_path, {"orders": ORDERS, "messages": MESSAGES})
    result = import_inputs(cfg, src, AS_OF)
    m = read_canonical(cfg.paths.data_dir)["messages"]
    assert m["message_id"].tolist() == ["m1", "m2", "m3"]
    assert m["customer_id"].tolist() == ["007", "8", "007"]  # ids kept as text
    assert m["sent_at"].tolist() == [
        utc("2024-03-07 08:00"),
        utc("2024-03-07 09:00"),
        utc("2024-04-01 18:00"),
    ]
    assert m["message_id"].dtype == ARROW_STR and isinstance(m["source"].dtype, pd.CategoricalDtype)
    assert m["offer"].isna().all()  # optional column absent from the file
    assert "offer" in result.derived["messages"]
    assert result.summary().set_index("table").loc["messages", "rows"] == 3
    SCHEMAS["messages"].validate(m)


def test_cli_import_takes_messages_flag(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(ORDERS)
    (tmp_path / "m.csv").write_text(MESSAGES)
    args = ["--data-dir", str(tmp_path / "d"), "--orders", str(tmp_path / "o.csv"), "--as-of", "2025-01-01"]
    res = CliRunner().invoke(app, ["import", *args, "--messages", str(tmp_path / "m.csv")])
    assert res.exit_code == 0, res.output
    assert len(read_canonical(tmp_path / "d")["messages"]) == 3
    bad = MESSAGES.replace("sms,import", "fax,import")
    (tmp_path / "m.csv").write_text(bad)
    res = CliRunner().invoke(app, ["validate", *args, "--messages", str(tmp_path / "m.csv")])
    assert res.exit_code != 0 and "fax" in res.output


def test_orders_only_and_no_messages_shops_read_empty_messages(tmp_path: Path) -> None:
    orders = pd.DataFrame(
        {"order_id": ["a"], "customer_id": ["1"], "ordered_at": [utc("2024-01-01")], "amount": [3.0]}
    )
    write_canonical({"orders": orders}, tmp_path)
    (tmp_path / "canonical" / "messages.parquet").unlink()  # a data directory from before the table existed
    m = read_canonical(tmp_path)["messages"]
    assert m.empty and list(m.columns) == list(empty("messages").columns)
    (tmp_path / "x").mkdir()
    cfg, src = setup(tmp_path / "x", {"orders": ORDERS})
    assert validate_inputs(cfg, src, AS_OF).tables["messages"].empty


BAD = {
    "missing column": (MESSAGES.replace(",source,", ",origin,"), "missing required column", "source", None),
    "naive timestamps": (
        MESSAGES.replace("2024-04-01T18:00:00Z", "2024-04-01 18:00"),
        "without a time zone",
        "sent_at",
        [3],
    ),
    "unknown channel": (
        MESSAGES.replace("sms,import", "fax,import"),
        "unknown message channels ['fax']",
        "channel",
        [3],
    ),
    "unknown source": (
        MESSAGES.replace("email,newsletter,nl-2024-03-07\nm2", "email,crm,nl-2024-03-07\nm2"),
        "unknown message sources ['crm']",
        "source",
        [1],
    ),
    "empty file": ("", "empty", None, None),
    "header only": ("message_id,customer_id,sent_at,channel,source\n", "no data rows", None, None),
    "duplicate message_id": (MESSAGES.replace("m3,", "m1,"), "duplicate message_id", "message_id", [1, 3]),
    "after as-of": (
        MESSAGES.replace("2024-04-01T18:00:00Z", "2025-04-01T18:00:00Z"),
        "after --as-of",
        "sent_at",
        [3],
    ),
    "missing customer": (MESSAGES.replace("m2,8,", "m2,,"), "missing values", "customer_id", [2]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_messages_are_a_clear_error_and_write_nothing(tmp_path: Path, case: str) -> None:
    text, needle, column, rows = BAD[case]
    cfg, src = setup(tmp_path, {"orders": ORDERS, "messages": text})
    prior = pd.DataFrame(
        {"order_id": ["p"], "customer_id": ["9"], "ordered_at": [utc("2023-01-01")], "amount": [1.0]}
    )
    canon = write_canonical({"orders": prior}, cfg.paths.data_dir)
    before = {p.name: p.read_bytes() for p in canon.iterdir()}
    with pytest.raises(DataError) as err:
        import_inputs(cfg, src, AS_OF)
    exc = err.value
    assert needle in str(exc)
    assert exc.hint
    assert exc.file is not None and Path(exc.file).name == "messages.csv"
    if column is not None:
        assert column in (exc.column or "")
    if rows is not None:
        assert exc.row_numbers == rows
    assert {p.name: p.read_bytes() for p in canon.iterdir()} == before
    assert sorted(p.name for p in cfg.paths.data_dir.iterdir()) == ["canonical"]


# --- rebuy's own sends: recorded by delivery, read once -----------------------------------------------


def _sent(ids: list[str], at: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message_id": ids,
            "customer_id": ["1"] * len(ids),
            "sent_at": [utc(at)] * len(ids),
            "channel": ["email"] * len(ids),
            "source": ["rebuy"] * len(ids),
            "campaign": ["winback"] * len(ids),
            "offer": ["coupon_10pct"] * len(ids),
        }
    )


def test_rebuy_sends_survive_a_reimport_and_count_once(tmp_path: Path) -> None:
    cfg, src = setup(tmp_path, {"orders": ORDERS, "messages": MESSAGES})
    data = cfg.paths.data_dir
    append_sent_messages(data, _sent(["d1", "d2"], "2024-06-01 10:00"))
    append_sent_messages(data, _sent(["d2"], "2024-06-01 10:00"))  # redelivered after a crash
    import_inputs(cfg, src, AS_OF)  # swaps the canonical folder: rebuy's record stays beside it
    m = read_canonical(data)["messages"]
    assert m["message_id"].tolist() == ["m1", "m2", "m3", "d1", "d2"]
    assert m.set_index("message_id").loc["d1", "source"] == "rebuy"
    assert len(list((data / SENT_MESSAGES).glob("part-*.parquet"))) == 2
    assert not list((data / SENT_MESSAGES).glob(".*"))  # no temp files left
    SCHEMAS["messages"].validate(m)


def test_union_keeps_first_row_per_id_and_categoricals() -> None:
    a = _sent(["x", "y"], "2024-01-02")
    b = _sent(["y", "z"], "2024-01-01").assign(source="import", channel="sms")
    u = union_messages(a, b)
    assert u["message_id"].tolist() == ["z", "x", "y"]  # time order
    assert u.set_index("message_id").loc["y", "source"] == "rebuy"  # the first frame wins
    assert all(
        isinstance(u[c].dtype, pd.CategoricalDtype) for c in ("channel", "source", "campaign", "offer")
    )
    assert union_messages(empty("messages")).empty


def test_delivery_records_each_accepted_send_as_a_rebuy_message() -> None:
    from pipelines.orchestrator import sent_messages

    batch = [
        ("d1", {"customer_id": "1", "channel": "email", "campaign": "c", "offer": "care_message"}),
        ("d2", {"customer_id": "2", "channel": "push", "campaign": "c", "offer": "points_x2"}),
    ]
    df = sent_messages(batch, ["d2"], utc("2024-06-01 10:00"))
    assert df["message_id"].tolist() == ["d2"] and df["customer_id"].tolist() == ["2"]
    assert df["source"].tolist() == ["rebuy"] and df["offer"].tolist() == ["points_x2"]
    assert df["sent_at"].tolist() == [utc("2024-06-01 10:00")]
    SCHEMAS["messages"].validate(union_messages(df))


def test_newsletters_count_toward_rebuys_caps_unless_configured_not_to() -> None:
    from pipelines.decision_log import HISTORY_COLUMNS
    from pipelines.policy_layer import capped_batch, message_counts, other_sends
    from rebuy.config import CapsConfig

    as_of = utc("2024-06-03 12:00")
    m = union_messages(
        _sent(["nl:1"], "2024-06-02 09:00").assign(source="newsletter", customer_id="1"),
        _sent(["nl:2"], "2024-05-20 09:00").assign(source="newsletter", customer_id="2"),  # outside 3 days
        _sent(["d9"], "2024-06-02 10:00").assign(customer_id="3"),  # rebuy's own: counted from the log only
    )
    caps = CapsConfig()  # email: 1 per 3 days
    assert caps.count_newsletters
    hist = pd.concat([pd.DataFrame(columns=HISTORY_COLUMNS), other_sends({"messages": m}, as_of, caps)])
    counts = message_counts(hist, as_of, caps)
    assert counts["email"].to_dict() == {"1": 1}
    note = capped_batch(pd.Series(["1", "2", "3"]), pd.Series(["email"] * 3), counts, caps)
    assert note.tolist() == ["cap:email", "", ""]
    assert other_sends({"messages": empty("messages")}, as_of, caps).empty
    assert not CapsConfig(count_newsletters=False).count_newsletters
