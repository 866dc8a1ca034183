"""The prediction log keeps the server's `received_at` and the caller's `as_of` (drift trusts `as_of` only
from callers holding the API key; `scored_at` is the one drift dates rows by)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("prediction_log")}
    for name in ("received_at", "as_of"):
        if name not in have:
            op.add_column("prediction_log", sa.Column(name, sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("prediction_log", "as_of")
    op.drop_column("prediction_log", "received_at")
