"""The PostgreSQL fixture starts a real server that SQLAlchemy and psycopg can use."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from tests.servers.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_session_database_answers_through_sqlalchemy(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert database == "s3test"


def test_module_database_is_fresh_and_separate(postgres_module_url: str, postgres_url: str) -> None:
    assert postgres_module_url != postgres_url
    engine = sa.create_engine(postgres_module_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert tables == 0


def test_fresh_database_is_dropped_afterwards(postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database("probe") as url:
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(postgres_server.dsn(name)) as conn:
            conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(postgres_server.dsn("postgres")) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert left == (0,)


def test_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn()) as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert row == ("127.0.0.1",)
    assert fsync == ("off",)
