"""Fixtures shared by every test tier. The real servers themselves live in ``tests/servers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgres import PostgresServer, run_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL server for the whole run."""
    with run_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session's default database (``postgresql+psycopg://...``)."""
    return postgres_server.url()


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a fresh empty database, private to the requesting test module."""
    with postgres_server.fresh_database(request.module.__name__.rsplit(".", 1)[-1]) as url:
        yield url
