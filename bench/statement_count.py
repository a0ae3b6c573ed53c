"""Counting the SQL statements a piece of code sends, by SQLAlchemy's cursor events.

An ``executemany`` counts once per parameter set (the server runs each), so batching by
``executemany`` does not hide statements; a multi-row ``INSERT ... VALUES`` counts once. ``BEGIN`` (sent by SQLite's begin hook; psycopg's is not
seen by the event) is left out of ``statements`` and counted in ``transactions`` on both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import ExecuteStyle


@dataclass
class StatementCount:
    statements: int = 0
    round_trips: int = 0
    transactions: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def per(self, items: int) -> float:
        return self.statements / max(items, 1)


@contextmanager
def counting(engine: Engine) -> Iterator[StatementCount]:
    count = StatementCount()

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, ctx: Any, executemany: bool) -> None:
        kind = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        if kind == "BEGIN":
            return
        # A plain executemany runs the statement once per parameter set; an INSERT of many rows
        # (``insertmanyvalues``) is one statement whatever its parameters.
        many = executemany and ctx is not None and ctx.execute_style == ExecuteStyle.EXECUTEMANY
        n = len(parameters) if many else 1
        count.statements += n
        count.round_trips += 1
        count.by_kind[kind] += n

    def on_begin(_conn: Any) -> None:
        count.transactions += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)
