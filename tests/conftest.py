"""Fixtures shared by every test tier. The real servers themselves live in ``tests/servers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgres import PostgresServer, run_postgres
from tests.servers.s3server import S3Endpoint, run_s3_server


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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """One S3-compatible server (moto, a separate process) for the whole run."""
    with run_s3_server() as endpoint:
        yield endpoint
