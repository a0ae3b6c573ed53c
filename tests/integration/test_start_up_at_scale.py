"""Starting many processes on one PostgreSQL database: they migrate in turns, a process that may not
migrate refuses a schema that is behind, and a replica with a generated secret refuses to start.

All with real processes (``python -m server.db.migrate``, ``stack.worker``, ``stack.serve``)
configured only through the environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from server.db.engine import create_db_engine
from server.db.migrate import SchemaNotCurrent, alembic_config, downgrade, ensure_current, upgrade
from server.inference.artifacts import REPO_ROOT
from tests.servers.postgres import PostgresServer
from tests.support.processes import service_env
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

STARTERS = 8
START_TIMEOUT_S = 120


def _heads(url: str) -> tuple[set[str], set[str]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        return current, set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    finally:
        engine.dispose()


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _refusal(module: str, env: dict[str, str]) -> str:
    """``python -m module`` run to its end, which must be a refusal to start (exit code 2): its stderr."""
    ran = subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert ran.returncode == 2, ran.stdout[-2000:] + ran.stderr[-2000:]
    return ran.stderr


def test_processes_starting_at_once_on_an_empty_database_all_come_up(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.fresh_database("race") as url:
        env = service_env(make_settings(tmp_path / "data", database_url=url))
        logs = [tmp_path / f"migrate-{n}.log" for n in range(STARTERS)]
        started = [_start("server.db.migrate", env, log) for log in logs]
        codes = [p.wait(timeout=START_TIMEOUT_S) for p in started]
        assert codes == [0] * STARTERS, "\n---\n".join(log.read_text()[-2000:] for log in logs)
        current, heads = _heads(url)
        assert current == heads


def test_a_process_that_may_not_migrate_refuses_a_schema_behind(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.fresh_database("behind") as url:
        env = service_env(make_settings(tmp_path / "data", database_url=url), S3_MIGRATE="off")
        refusal = _refusal("stack.worker", env)
        assert "cannot start: the database schema is at nothing (empty database)" in refusal
        assert "python -m server.db.migrate" in refusal
        assert _heads(url)[0] == set()  # it did not migrate


def test_ensure_current_names_a_schema_behind_and_accepts_the_head(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 's3.db'}")
    try:
        with pytest.raises(SchemaNotCurrent, match="empty database"):
            ensure_current(engine)
        upgrade(engine)
        ensure_current(engine)
        downgrade(engine, "-1")
        with pytest.raises(SchemaNotCurrent, match="this code needs"):
            ensure_current(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("unset", ["S3_JWT_SECRET", "S3_CALLBACK_SECRET", "S3_ADMIN_TOKEN"])
def test_a_replica_on_a_shared_database_with_a_generated_secret_refuses_to_start(unset: str, tmp_path: Path) -> None:
    # No database is reached: the check comes first, so an address nothing listens on will do.
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none"
    env = service_env(make_settings(tmp_path / "data", database_url=url))
    del env[unset]
    refusal = _refusal("stack.serve", env)
    lines = refusal.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {unset} is unset"), refusal
    assert not (tmp_path / "data" / "secrets").exists()  # nothing was generated
