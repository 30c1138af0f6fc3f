"""Alembic environment for the orders role: runs on the connection the app hands over."""

from streamapp.db.engines import Role
from streamapp.db.migrate import run_env

run_env(Role.ORDERS)
