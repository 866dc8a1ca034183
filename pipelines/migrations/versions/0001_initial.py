"""The decision log, outbox and forget list as rebuy created them before migrations existed.

Tables that already exist (a database made by `METADATA.create_all` before Alembic) are left as they are,
so an existing log is adopted, not rebuilt.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "decisions" not in have:
        op.create_table(
            "decisions",
            sa.Column("decision_id", sa.String(64), primary_key=True),
            sa.Column("customer_id", sa.String(256), nullable=False),
            sa.Column("decided_at", sa.DateTime(), nullable=False),
            sa.Column("trigger", sa.String(64), nullable=False),
            sa.Column("campaign", sa.String(64), nullable=False),
            sa.Column("episode", sa.String(128), nullable=False),
            sa.Column("offer", sa.String(64), nullable=False),
            sa.Column("channel", sa.String(16), nullable=False),
            sa.Column("group", sa.String(16), nullable=False),
            sa.Column("propensity", sa.Float(), nullable=False),
            sa.Column("distribution", sa.Text(), nullable=False),
            sa.Column("model_versions", sa.Text(), nullable=False),
            sa.Column("scores", sa.Text(), nullable=False),
            sa.Column("reasons", sa.Text(), nullable=False),
            sa.Column("segment", sa.String(32), nullable=True),
            sa.Column("note", sa.String(128), nullable=False),
            sa.Column("pseudonymised", sa.Boolean(), nullable=False),
        )
        op.create_index("ix_decisions_customer_id", "decisions", ["customer_id"])
        op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    if "outbox" not in have:
        op.create_table(
            "outbox",
            sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.decision_id"), primary_key=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("sent_at", sa.DateTime(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
        )
        op.create_index("ix_outbox_status", "outbox", ["status"])
    if "forgotten" not in have:
        op.create_table(
            "forgotten",
            sa.Column("customer_hash", sa.String(64), primary_key=True),
            sa.Column("forgotten_at", sa.DateTime(), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("forgotten")
    op.drop_table("outbox")
    op.drop_table("decisions")
