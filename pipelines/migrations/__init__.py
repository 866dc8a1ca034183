"""Alembic migrations of the decision log, outbox, forget list and prediction log (SQLite and Postgres).

Applied by `rebuy db upgrade` and on first use (`pipelines.decision_log.engine_for`). The version is kept in
`rebuy_alembic_version`, not Alembic's default table, so the decision log can share a Postgres database
with MLflow (which keeps its own `alembic_version`). A new migration: add `versions/NNNN_what.py` with
`down_revision` = the previous one and bump `HEAD` in pipelines.schema (a test checks they agree).
"""
