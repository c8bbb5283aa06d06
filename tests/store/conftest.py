"""Fixtures of the store tests: the real PostgreSQL from tests/support/postgres.py."""

from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)
