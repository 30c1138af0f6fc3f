"""Fixtures for machine-health tests."""

from tests.faust_testing import captured_sends, faust_app  # noqa: F401
