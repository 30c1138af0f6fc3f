"""Initial telemetry schema: the tables of streamapp.db.telemetry as first released.

Revision ID: 0001
Revises:
"""

from alembic import op

from streamapp.db.telemetry import TelemetryBase

revision = "0001"
down_revision = None


def upgrade() -> None:
    TelemetryBase.metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    TelemetryBase.metadata.drop_all(op.get_bind())
