"""One sweeper and one gauge exporter per PostgreSQL database, however many processes run.

Several sweepers on one database: each round exactly one sweeps (the holder of the sweeper lock);
when the leader's session dies another takes over at its next round. The same with real worker
processes, the leader killed with SIGKILL. The database gauges come from the leader only, so a
sum over replicas counts each job once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from server.db.advisory import Leadership, LockKey
from server.db.engine import Database
from server.metrics import ServiceMetrics
from server.metrics.http import start_metrics_endpoint
from server.service.sweeper import sweep_if_leader
from stack.runtime import _state_exporter
from tests.servers.postgres import PostgresServer
from tests.support.pipeline import job_statuses, link_tiny_model, queued_job
from tests.support.processes import Child, child, service_env, wait_for
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

SWEEPERS = 3


@pytest.fixture
def pg_stack(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Stack]:
    with postgres_server.fresh_database("leader") as url:
        built = make_stack(url, link_tiny_model(tmp_path / "data"), upload_deadline_s=1, inference="onnx")
        try:
            yield built
        finally:
            built.db.dispose()


@pytest.fixture
def processes(pg_stack: Stack) -> Iterator[list[Database]]:
    """One engine per simulated process: separate sessions, as separate processes would have."""
    dbs = [Database.from_url(pg_stack.settings.effective_database_url) for _ in range(SWEEPERS)]
    try:
        yield dbs
    finally:
        for db in dbs:
            db.dispose()


def _lock_holder_backend(db: Database) -> int | None:
    """The PostgreSQL backend pid holding the sweeper lock (a bigint key below 2**32 is objid)."""
    with db.read() as s:
        pid = s.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = :k"),
            {"k": int(LockKey.SWEEPER)},
        ).scalar()
    return int(pid) if pid is not None else None


def test_one_sweeper_per_round_and_another_takes_over_when_the_leader_dies(
    pg_stack: Stack, processes: list[Database]
) -> None:
    leaders = [Leadership(db) for db in processes]
    try:
        rounds = [
            [
                sweep_if_leader(db, pg_stack.store, pg_stack.settings, lead)
                for db, lead in zip(processes, leaders, strict=True)
            ]
            for _ in range(3)
        ]
        assert all(sum(r) == 1 for r in rounds), rounds
        first = rounds[0].index(True)
        assert all(r[first] for r in rounds)  # the lead stays where it is

        # The leader sweeps for real: an upload deadline passes, its round cancels the job.
        user = pg_stack.services.accounts.create_anonymous().user.user_id
        abandoned = pg_stack.services.jobs.create(user, preset_id="interior", item_count=2).job.job_id
        time.sleep(1.2)
        assert [
            sweep_if_leader(db, pg_stack.store, pg_stack.settings, lead)
            for db, lead in zip(processes, leaders, strict=True)
        ].count(True) == 1
        assert job_statuses(pg_stack.db, [abandoned])[abandoned] == "canceled"

        # The leader's session dies (what PostgreSQL sees when its process is killed).
        holder = _lock_holder_backend(pg_stack.db)
        assert holder is not None
        with pg_stack.db.write() as s:
            assert s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder}).scalar()
        wait_for(lambda: _lock_holder_backend(pg_stack.db) is None, timeout_s=10, what="the lock to be freed")
        survivors = [n for n in range(SWEEPERS) if n != first]
        after = [sweep_if_leader(processes[n], pg_stack.store, pg_stack.settings, leaders[n]) for n in survivors]
        assert after.count(True) == 1, after
        # The old leader notices on its next round that it lost the lock, and does not sweep.
        assert sweep_if_leader(processes[first], pg_stack.store, pg_stack.settings, leaders[first]) is False
        assert not leaders[first].is_leader
    finally:
        for lead in leaders:
            lead.close()


def _took_lead(proc: Child) -> bool:
    return f"leader lock {int(LockKey.SWEEPER):#x}: taken" in proc.output()


def test_worker_processes_elect_one_sweeper_and_replace_it_after_sigkill(pg_stack: Stack, tmp_path: Path) -> None:
    env = service_env(pg_stack.settings.changed(sweep_interval_s=0.2))
    logs = tmp_path / "logs"
    with child("stack.worker", env, logs, name="a") as a, child("stack.worker", env, logs, name="b") as b:
        wait_for(
            lambda: _took_lead(a) or _took_lead(b) or not (a.alive() and b.alive()),
            timeout_s=90,
            what="a worker process to take the sweeper lock",
        )
        assert a.alive() and b.alive(), a.output()[-2000:] + b.output()[-2000:]
        leader, other = (a, b) if _took_lead(a) else (b, a)
        time.sleep(1.0)  # several rounds: the other process keeps trying and keeps losing
        assert not _took_lead(other), other.output()[-2000:]
        leader.kill_hard()
        wait_for(lambda: _took_lead(other), timeout_s=10, what="the other worker to take over the sweeping")
        assert other.alive()


def _exported_jobs(metrics: ServiceMetrics) -> float | None:
    endpoint = start_metrics_endpoint(metrics.registry, host="127.0.0.1", port=0)
    assert endpoint is not None
    try:
        body = httpx.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=10).text
    finally:
        endpoint.close()
    values = [s.value for f in text_string_to_metric_families(body) if f.name == "s3_jobs" for s in f.samples]
    return sum(values) if values else None


def test_database_gauges_come_from_the_leader_only(pg_stack: Stack, processes: list[Database]) -> None:
    queued_job(pg_stack, 2)
    queued_job(pg_stack, 1)
    leaders = [Leadership(db) for db in processes]
    try:
        replicas = [
            ServiceMetrics.create(db, exports_state=_state_exporter(pg_stack.settings, lead))
            for db, lead in zip(processes, leaders, strict=True)
        ]
        for lead in leaders:
            lead.refresh()
        exported = [_exported_jobs(m) for m in replicas]
        assert sorted(exported, key=lambda v: v is None) == [2, None, None], exported  # summed: counted once

        gone = exported.index(2)
        leaders[gone].close()  # the leader shuts down
        for n, lead in enumerate(leaders):
            if n != gone:
                lead.refresh()
        after = [_exported_jobs(m) for m in replicas]
        assert after.count(None) == SWEEPERS - 1 and after.index(2) != gone, after

        # S3_STATE_METRICS=on exports whatever the lock; off never does.
        always = _state_exporter(pg_stack.settings.changed(state_metrics="on"), leaders[0])
        never = _state_exporter(pg_stack.settings.changed(state_metrics="off"), leaders[0])
        assert (always(), never()) == (True, False)
    finally:
        for lead in leaders:
            lead.close()
