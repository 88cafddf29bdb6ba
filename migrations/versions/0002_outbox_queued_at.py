"""outbox.queued_at: since when a row has been waiting to be sent

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.model

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("queued_at", core.model.UTCDateTime(), nullable=True))
    # rows queued before this column existed: the best known start is their last change
    op.execute("UPDATE outbox SET queued_at = updated_at")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("queued_at", existing_type=core.model.UTCDateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("queued_at")
