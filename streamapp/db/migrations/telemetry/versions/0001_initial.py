"""Initial telemetry schema: the tables of streamapp.db.telemetry as first released."""

from streamapp.db.engines import Role
from streamapp.db.migrate import initial_revision

revision = "0001"
down_revision = None
upgrade, downgrade = initial_revision(Role.TELEMETRY)
