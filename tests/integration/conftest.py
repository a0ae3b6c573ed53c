"""Integration fixtures: the service stack on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.postgres import PostgresServer
from tests.support.stack import Stack, make_stack


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One fresh database per test, on each backend the service supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 's3.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.fresh_database(request.node.name[:30]) as url:
        yield url


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    built = make_stack(database_url, tmp_path / "data")
    try:
        yield built
    finally:
        built.db.dispose()
