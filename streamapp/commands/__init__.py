"""Faust CLI commands of streamapp (`faust -A streamapp <command>`), found by autodiscovery."""
