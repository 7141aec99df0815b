"""Photos get a caption and comments; a data migration on one engine.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from pyramid_dbrouter.alembic import engine_name

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("caption", sa.String(200)))
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id"), nullable=False),
        sa.Column("body", sa.String(200), nullable=False),
    )
    if engine_name() == "default":
        op.execute("INSERT INTO users (id, name) VALUES (1, 'admin')")


def downgrade():
    if engine_name() == "default":
        op.execute("DELETE FROM users WHERE id = 1")
    op.drop_table("comments")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("caption")
