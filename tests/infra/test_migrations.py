"""Decision-log migrations on SQLite (no server): head, adoption of a pre-migration log, `rebuy db upgrade`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from typer.testing import CliRunner

from pipelines import decision_log as dl
from pipelines.schema import HEAD, VERSION_TABLE, current, script_head, upgrade


def test_head_constant_matches_the_scripts() -> None:
    assert script_head() == HEAD


def test_a_log_made_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    engine = sa.create_engine(url)
    dl.METADATA.tables["forgotten"].create(engine)
    for name in ("decisions", "outbox"):
        dl.METADATA.tables[name].create(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(dl.FORGOTTEN).values(customer_hash="h1", forgotten_at=pd.Timestamp("2025-01-01"))
        )
        assert current(conn) is None
    assert upgrade(engine) == (None, HEAD)
    assert upgrade(engine) == (HEAD, HEAD)  # idempotent
    with engine.connect() as conn:
        assert dl.forgotten_hashes(conn) == {"h1"}
        tables = set(sa.inspect(conn).get_table_names())
    assert {"decisions", "outbox", "forgotten", "prediction_log", VERSION_TABLE} <= tables
    engine.dispose()


def test_engine_for_migrates_on_first_use(tmp_path: Path) -> None:
    engine = dl.engine_for(f"sqlite:///{tmp_path / 'new' / 'd.db'}")
    with engine.connect() as conn:
        assert current(conn) == HEAD
    engine.dispose()


def test_rebuy_db_upgrade_command(tmp_path: Path) -> None:
    from cli.app import app

    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert f"new -> {HEAD}" in first.output and "decisions.db" in first.output
    again = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert f"{HEAD} -> {HEAD}" in again.output
