"""job_items.analysis_state: the analysis state stored, not read back from the error message

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The values as they were derived before this column existed (server.service.item_state).
_BACKFILL = """
UPDATE job_items SET analysis_state = CASE
    WHEN stage = 'analyze' THEN 'pending'
    WHEN instances IS NOT NULL AND CAST(instances AS TEXT) <> 'null' THEN 'done'
    WHEN error LIKE 'analysis failed%' THEN 'failed'
    ELSE 'none'
END
"""


def upgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("analysis_state", sa.String(length=16), server_default="none", nullable=False))
    op.execute(_BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_column("analysis_state")
