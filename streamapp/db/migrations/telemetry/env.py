"""Alembic environment for the telemetry role: runs on the connection the app hands over."""

from alembic import context

from streamapp.db.telemetry import TelemetryBase

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=TelemetryBase.metadata,
    version_table=context.config.get_main_option("version_table"),
)
with context.begin_transaction():
    context.run_migrations()
