"""Web views served by the worker's own web server, found by autodiscovery."""
