"""Databases of the two roles: telemetry (PostgreSQL in production) and orders (MySQL/MariaDB)."""
