"""The decision-log database's schema version: Alembic migrations (pipelines/migrations), run in-process.

`upgrade(engine)` brings a database to `HEAD` (idempotent; `rebuy db upgrade`, and `engine_for` on first
use). Each call checks the version with one query; Alembic itself (slow to import and load) runs only when
the database is behind. On Postgres, concurrent upgraders serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rebuy.config import Config

HEAD = "0003"
VERSION_TABLE = "rebuy_alembic_version"
_DIR = Path(__file__).with_name("migrations")
_lock = threading.Lock()


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key from text (Postgres advisory locks take a bigint)."""
    digest = hashlib.sha256("\x1f".join(("rebuy", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def current(conn: sa.Connection) -> str | None:
    """The database's revision, or None when it has none (new, or made before migrations)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _alembic_config(conn: sa.Connection) -> Any:
    from alembic.config import Config as AlembicConfig

    ac = AlembicConfig()
    ac.set_main_option("script_location", str(_DIR))
    ac.attributes["connection"] = conn
    return ac


def script_head() -> str | None:
    """The newest revision among the migration scripts (a test checks it equals HEAD)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    ac = AlembicConfig()
    ac.set_main_option("script_location", str(_DIR))
    return ScriptDirectory.from_config(ac).get_current_head()


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Apply the missing migrations; returns (revision before, revision after)."""
    with _lock, engine.connect() as conn:
        before = current(conn)
        conn.rollback()
        if before != HEAD:
            from alembic import command

            pg = engine.dialect.name == "postgresql"
            if pg:  # two processes upgrading at once: the second waits, then finds nothing to do
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_key("migrations")})
                conn.commit()
            try:
                command.upgrade(_alembic_config(conn), "head")
                conn.commit()
            finally:
                if pg:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("migrations")})
                    conn.commit()
        after = current(conn)
        conn.rollback()
    return before, after or HEAD


def upgrade_stores(cfg: Config) -> dict[str, tuple[str | None, str]]:
    """`rebuy db upgrade`: migrate the decision-log database and, when it is a database of its own, the
    prediction log's; returns {url without password: (revision before, after)}."""
    urls = [cfg.decision_log_url]
    if cfg.stores.prediction_log != "parquet" and cfg.stores.prediction_log not in urls:
        urls.append(cfg.stores.prediction_log)
    out = {}
    for url in urls:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        try:
            out[engine.url.render_as_string(hide_password=True)] = upgrade(engine)
        finally:
            engine.dispose()
    return out
