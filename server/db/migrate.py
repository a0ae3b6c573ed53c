"""Schema migrations: Alembic is the only way the schema is created or changed.

``upgrade`` runs under the migrations advisory lock (``server.db.advisory``), so any number of
processes starting at once on an empty PostgreSQL database take turns: the first migrates, the
others find the schema current. ``python -m server.db.migrate`` is the same upgrade as a step of its
own (a release job); processes started with ``S3_MIGRATE=off`` only check, via ``ensure_current``,
and refuse to start on a schema that is behind their code.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from server.db.advisory import LockKey, held

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaNotCurrent(RuntimeError):
    """The database schema is older than this code and this process may not migrate it."""


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # env.py runs the migrations on this engine's connection instead of building its own.
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with held(engine, LockKey.MIGRATIONS):
        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with held(engine, LockKey.MIGRATIONS):
        command.downgrade(alembic_config(engine), revision)


def ensure_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrent` unless the database is at this code's head revision.

    A database *ahead* of the code (a revision this code does not know: a newer release migrated
    it during a rolling deploy) is accepted with a warning, since migrations only add.
    """
    script = ScriptDirectory.from_config(alembic_config(engine))
    heads = set(script.get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == heads:
        return
    try:
        known = all(script.get_revision(rev) is not None for rev in current)
    except CommandError:
        known = False
    if current and not known:
        log.warning("the database schema %s is newer than this code's %s", sorted(current), sorted(heads))
        return
    raise SchemaNotCurrent(
        f"the database schema is at {', '.join(sorted(current)) or 'nothing (empty database)'}, this code needs "
        f"{', '.join(sorted(heads))}: run `python -m server.db.migrate` (or start with S3_MIGRATE=on)"
    )


def main() -> int:
    """``python -m server.db.migrate``: bring the configured database to the head revision."""
    from server.config import Settings
    from server.db.engine import create_db_engine
    from server.logs import configure_logging
    from server.settings_env import SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level)
    engine = create_db_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        ensure_current(engine)
    finally:
        engine.dispose()
    log.info("database schema is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
