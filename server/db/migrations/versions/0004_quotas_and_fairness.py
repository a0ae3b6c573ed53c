"""quotas, purging, input pins, analysis credits and fair queue turns

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JOB_COUNTERS = (
    "analysis_passes",
    "analysis_credits_reserved",
    "analysis_credits_spent",
    "analysis_pass_items",
    "analysis_pass_done",
)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored_bytes", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        for name in _JOB_COUNTERS:
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_jobs_purge", ["purged_at", "status", "finished_at"], unique=False)
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("input_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("analyzed_concepts", sa.JSON(), nullable=True))
    op.create_table(
        "queue_turns",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_queue_turns_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_queue_turns")),
    )


def downgrade() -> None:
    op.drop_table("queue_turns")
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_column("analyzed_concepts")
        batch_op.drop_column("input_sha256")
        batch_op.drop_column("input_bytes")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_purge")
        for name in reversed(_JOB_COUNTERS):
            batch_op.drop_column(name)
        batch_op.drop_column("purged_at")
        batch_op.drop_column("stored_bytes")
