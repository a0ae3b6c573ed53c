"""A claim reads about the items it leases, not the whole queue: on PostgreSQL the pick statement's
reads of ``job_items`` stay near the batch size however many items wait."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.clock import utcnow
from server.work import claim_order
from tests.servers.postgres import PostgresServer
from tests.support.pipeline import queued_albums
from tests.support.stack import Stack, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

BATCH = 16


def _job_item_rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's nodes on ``job_items`` produced, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == "job_items" else 0
    return int(own + sum(_job_item_rows_read(child) for child in plan.get("Plans", [])))


def _rows_read(stack: Stack, *, lateral: bool) -> tuple[int, int]:
    compiled = claim_order.pick(BATCH, lateral=lateral).compile(dialect=stack.db.engine.dialect)
    expanded = compiled.construct_expanded_state({claim_order.NOW.key: utcnow()})
    with stack.db.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("ANALYZE job_items")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {expanded.statement}", expanded.parameters)
        row = cursor.fetchone()
        assert row is not None
        (document,) = row
        conn.rollback()
    top = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return _job_item_rows_read(top), int(top["Actual Rows"])


def test_a_claim_reads_its_batch_not_the_queue(tmp_path: Path, postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database("claim_cost") as url:
        stack = make_stack(url, tmp_path / "data")
        try:
            jobs, items = 5, 100
            queued_albums(stack, jobs, items, pro=True)
            read, picked = _rows_read(stack, lateral=True)
            assert picked == BATCH
            # The batch, plus one index probe per open job for its oldest waiting item.
            assert read <= BATCH + 2 * jobs, read
            # The guard: the embedded (SQLite) form of the same order sorts every waiting item.
            read_all, picked_all = _rows_read(stack, lateral=False)
            assert picked_all == BATCH and read_all >= jobs * items, read_all
            print(f"job_items rows read per claim of {BATCH}: {read} (all-items sort: {read_all})")
        finally:
            stack.db.dispose()
