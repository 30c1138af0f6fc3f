"""Initial orders schema: the tables of streamapp.db.orders as first released.

Revision ID: 0001
Revises:
"""

from alembic import op

from streamapp.db.orders import OrdersBase

revision = "0001"
down_revision = None


def upgrade() -> None:
    OrdersBase.metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    OrdersBase.metadata.drop_all(op.get_bind())
