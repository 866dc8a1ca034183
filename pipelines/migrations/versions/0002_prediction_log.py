"""The prediction log as a table (serving writes it when [stores] prediction_log is a database URL).

Long rows, as the Parquet log: one per (customer, model) scored, the model's features as one JSON object
(the feature set differs by model and changes with retraining, so it is not a column per feature).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "prediction_log" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "prediction_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("features", sa.Text(), nullable=False),
    )
    op.create_index("ix_prediction_log_scored_at", "prediction_log", ["scored_at"])
    op.create_index("ix_prediction_log_customer_id", "prediction_log", ["customer_id"])


def downgrade() -> None:
    op.drop_table("prediction_log")
