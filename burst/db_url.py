"""Which URLs can be burst's database (:func:`database_url_problem`), without pydantic.

Kept apart from :mod:`burst.config` (which re-exports it) so that ``burst status`` can check a
``--database-url`` without importing the configuration models (start-up, issue 15).
"""

from __future__ import annotations

SUPPORTED_DATABASES = "SQLite (sqlite:///PATH) and PostgreSQL (postgresql+psycopg://USER@HOST/DB)"
_DB_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking a cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be burst's database, or None. Shared by ``database_url:``, ``--store``,
    ``--database-url`` and ``burst db --url``; the message never repeats the password."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or any(c.isspace() for c in url):
        # not echoed: a value that is not a URL may be a pasted password
        return f"not a database URL; burst supports {SUPPORTED_DATABASES}"
    if scheme.lower() not in _DB_SCHEMES:
        return f"unsupported database {clip(scheme, 30)!r}; burst supports {SUPPORTED_DATABASES}"
    if scheme.lower().startswith("sqlite") and rest and not rest.startswith("/"):
        return "a SQLite URL is sqlite:///RELATIVE/PATH, sqlite:////ABSOLUTE/PATH or sqlite:// (in memory)"
    if scheme.lower().startswith("postgresql") and not rest.split("/", 1)[0].rpartition("@")[2]:
        return "a PostgreSQL URL names its host: postgresql+psycopg://USER@HOST[:PORT]/DB"
    return None
