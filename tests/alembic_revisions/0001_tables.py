"""The shared tables and the tenants' photos (one script for every engine).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(60), nullable=False),
    )
    op.create_index("ix_users_name", "users", ["name"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("what", sa.String(60), nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("total", sa.Integer, nullable=False),
    )
    tags = op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(30), nullable=False),
    )
    op.bulk_insert(tags, [{"id": 1, "label": "new"}])
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("photos")
    op.drop_table("tags")
    op.drop_table("invoices")
    op.drop_table("events")
    op.drop_index("ix_users_name", table_name="users")
    op.drop_table("users")
