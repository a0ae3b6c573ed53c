"""Migration 0007 stores each item's analysis state, backfilled from what the rows said before."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, text

from server.db.migrate import downgrade, upgrade

ROWS = {
    # idx: (stage, instances JSON, error) -> the state the backfill must give
    0: (("analyze", None, None), "pending"),
    1: (("none", "[]", None), "done"),
    2: (("none", None, "analysis failed: Triton down"), "failed"),
    3: (("none", None, None), "none"),
    4: (("none", "null", "canceled by the user"), "none"),
}


def test_the_backfill_reads_the_old_rows(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine, "head")
        downgrade(engine, "0006")
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO users (id, plan, auth_provider, credits_granted, credits_available,"
                    " credits_reserved, credits_spent, created_at) VALUES ('u', 'free', 'anonymous', 0, 0, 0, 0, :now)"
                ),
                {"now": now},
            )
            c.execute(
                text(
                    "INSERT INTO jobs (id, user_id, status, preset_id, total_items, done_items, failed_items,"
                    " cost_per_item, credits_reserved, credits_spent, package_state, package_attempts,"
                    " created_at, updated_at, upload_deadline_at) VALUES ('j', 'u', 'uploaded', 'interior',"
                    " 5, 0, 0, 1, 0, 0, 'none', 0, :now, :now, :now)"
                ),
                {"now": now},
            )
            for idx, ((stage, instances, error), _) in ROWS.items():
                c.execute(
                    text(
                        "INSERT INTO job_items (job_id, idx, status, stage, input_key, instances, error,"
                        " attempts, updated_at) VALUES ('j', :idx, 'uploaded', :stage, 'k', :instances, :error, 0, :now)"
                    ),
                    {"idx": idx, "stage": stage, "instances": instances, "error": error, "now": now},
                )
        upgrade(engine, "0007")
        with engine.connect() as c:
            got: dict[int, str] = dict(c.execute(text("SELECT idx, analysis_state FROM job_items ORDER BY idx")).all())
        assert got == {idx: want for idx, (_, want) in ROWS.items()}
    finally:
        engine.dispose()
