"""Scale-out, as an operator runs it on one machine standing in for several: one PostgreSQL, one
S3-compatible server, one Triton, two JobService replicas (``stack.serve``, ``S3_WORKERS=0``)
sharing their secrets, a direct database worker and two workers behind the WorkerService
(``stack.worker --api``, whose environment holds no database or storage settings at all).

Albums are submitted through both replicas; mid-run an API worker and then a replica are killed
with SIGKILL. Every album ends done, every item is charged exactly once, and the dead API worker's
items are back in the queue within seconds (its stream's disconnect, not its lease, gives them back).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bench.loadgen import RULE, photo
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.inference.local_triton import LocalTriton
from server.ports import free_port
from server.storage import keys
from stack.wiring import build_store
from tests.integration.triton import conftest as triton_fixtures
from tests.servers.postgres import PostgresServer
from tests.servers.s3server import S3Endpoint
from tests.support.invariants import check_invariants
from tests.support.pipeline import spend_refs
from tests.support.processes import Child, child, service_env, wait_for, wait_http_ready
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

# The tiny model's Triton, as the Triton tests start it.
tiny_artifact = triton_fixtures.tiny_artifact
triton_server = triton_fixtures.triton_server

ALBUMS = 4
PHOTOS = 4
PHOTO = (480, 360)
WORKER_TOKEN = "worker-" + "w" * 40
RELEASE_BOUND_S = 5.0
"""The dead API worker's items are claimable again this soon: its replica sees the stream close at
once (a lease would take ``S3_LEASE_S``, 10 s)."""
RETRY_BOUND_S = 15.0
"""...and worked on again by another worker within this (well under the old 60 s lease)."""
DONE_TIMEOUT_S = 150.0


def _data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text[:2000]
    return response.json()["data"]


def _submit(base: str, seed: int) -> tuple[str, str]:
    """One user's album through the REST shim of one replica: (token, job id), executing."""
    with httpx.Client(base_url=base, timeout=30) as http:
        anon = _data(http.post("/auth/anon"), 201)
        auth = {"Authorization": f"Bearer {anon['token']}"}
        rule = _data(http.post("/rules", json=RULE, headers=auth), 201)
        created = _data(http.post("/jobs", json={"preset": "interior", "item_count": PHOTOS}, headers=auth), 201)
        for n, target in enumerate(created["upload_urls"]):
            put = httpx.request(
                target["method"], target["url"], content=photo(*PHOTO, seed * 100 + n), headers=target["headers"]
            )
            assert put.status_code in (200, 204), put.text[:500]
        job_id = created["job_id"]
        _data(http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
        _data(http.post(f"/jobs/{job_id}/execute", json={"rule_id": rule["rule_id"]}, headers=auth))
        return anon["token"], job_id


def _owners(db: Database) -> dict[tuple[str, int], str]:
    with db.read() as s:
        rows = s.execute(
            select(JobItemRow.job_id, JobItemRow.idx, JobItemRow.lease_owner).where(JobItemRow.lease_owner.is_not(None))
        )
        return {(r.job_id, r.idx): str(r.lease_owner) for r in rows}


def _statuses(db: Database) -> dict[str, str]:
    with db.read() as s:
        return {j.id: j.status for j in s.scalars(select(JobRow))}


def _api_env(triton_url: str) -> dict[str, str]:
    """Only what an API worker needs: no database, no storage, no other secret."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(S3_WORKER_TOKEN=WORKER_TOKEN, S3_TRITON_URL=triton_url, PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    with postgres_server.fresh_database("scale_out") as url:
        yield url


def test_two_replicas_direct_and_api_workers_survive_kills(
    database: str, s3_endpoint: S3Endpoint, triton_server: LocalTriton, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    replicas = []
    for n in range(2):
        replicas.append(
            make_settings(
                tmp_path / f"replica-{n}",
                database_url=database,
                storage="s3",
                s3_endpoint_url=s3_endpoint.url,
                s3_access_key_id=s3_endpoint.access_key_id,
                s3_secret_access_key=s3_endpoint.secret_access_key,
                s3_region=s3_endpoint.region,
                s3_bucket="scale-out",
                http_port=free_port(),
                grpc_port=free_port(),
                workers=0,
                lease_s=10.0,
                worker_token=WORKER_TOKEN,
                sweep_interval_s=1.0,
            )
        )
    store = build_store(replicas[0])  # creates the bucket once, before the replicas race for it
    bases = [f"http://127.0.0.1:{r.http.port}" for r in replicas]
    grpc_targets = [f"127.0.0.1:{r.grpc.port}" for r in replicas]
    extra = {"S3_TRITON_URL": triton_server.url, "S3_METRICS_PORT": "0"}
    db = Database.from_url(database)
    with ExitStack() as running:
        serving: list[Child] = []
        for n, settings in enumerate(replicas):
            serving.append(
                running.enter_context(child("stack.serve", service_env(settings, **extra), logs, name=f"replica-{n}"))
            )
            wait_http_ready(bases[n], serving[n], timeout_s=90)
        direct_env = service_env(replicas[0], **extra, S3_WORKERS="1")
        direct = running.enter_context(child("stack.worker", direct_env, logs, name="direct"))
        api = [
            running.enter_context(
                child(
                    "stack.worker",
                    _api_env(triton_server.url),
                    logs,
                    "--api",
                    ",".join(grpc_targets[n:] + grpc_targets[:n]),  # each starts on another replica
                    "--workers",
                    str(n + 1),
                    name=f"api-{n}",
                )
            )
            for n in range(2)
        ]
        wait_for(
            lambda: (
                sum(p.output().count("worker stream api:") for p in serving) >= 2 or not all(p.alive() for p in api)
            ),
            timeout_s=60,
            what="both API workers to open their lease streams",
        )
        assert all(p.alive() for p in api), "\n".join(p.output()[-3000:] for p in api)

        jobs = [_submit(bases[n % 2], n) for n in range(ALBUMS)]
        job_ids = [j for _, j in jobs]
        seen: set[str] = set()

        def leased_by(proc: Child) -> set[tuple[str, int]]:
            owners = _owners(db)
            seen.update(owners.values())
            return {k for k, v in owners.items() if v.startswith("api:") and f":{proc.pid}:" in v}

        doomed = api[0]
        wait_for(lambda: bool(leased_by(doomed)), timeout_s=60, what="the doomed API worker to hold a claim")
        orphans = leased_by(doomed)
        doomed.kill_hard()
        killed_at = time.monotonic()
        wait_for(lambda: not leased_by(doomed), timeout_s=RELEASE_BOUND_S, what="the dead worker's claims released")
        released_s = time.monotonic() - killed_at

        def retried() -> bool:
            owners, statuses = _owners(db), _items(db, orphans)
            return all(k in owners or statuses[k] == "done" for k in orphans)

        wait_for(retried, timeout_s=RETRY_BOUND_S, what="the dead worker's items to be worked on again")
        retried_s = time.monotonic() - killed_at
        print(f"dead API worker: {len(orphans)} claims released after {released_s:.2f}s, retried by {retried_s:.2f}s")

        serving[1].kill_hard()  # a replica, with the survivor's and the direct worker's work in flight
        wait_for(
            lambda: (
                all(_statuses(db).get(j) in ("done", "failed", "canceled") for j in job_ids)
                or not (serving[0].alive() and direct.alive() and api[1].alive())
            ),
            timeout_s=DONE_TIMEOUT_S,
            what="every album to end",
            poll_s=0.2,
        )
        for proc in (serving[0], direct, api[1]):
            assert proc.alive(), proc.output()[-3000:]
        # The surviving API worker, which started on the killed replica, moved to the other one.
        assert f"lease stream to {grpc_targets[1]} ended" in api[1].output(), api[1].output()[-3000:]
        opened = [
            line for line in serving[0].output().splitlines() if "worker stream api:" in line and "opened" in line
        ]
        assert len(opened) >= 2, opened  # api-0 at the start, api-1 after the other replica died

        token, _ = jobs[0]
        with httpx.Client(base_url=bases[0], timeout=30) as http:
            # A job created through the killed replica, read through the other: shared secrets.
            seen_job = _data(http.get(f"/jobs/{jobs[1][1]}", headers={"Authorization": f"Bearer {jobs[1][0]}"}))
            assert seen_job["status"] == "done"
            me = _data(http.get("/me", headers={"Authorization": f"Bearer {token}"}))
            assert (me["credits_spent"], me["credits_reserved"]) == (PHOTOS, 0)

    statuses = _statuses(db)
    assert [statuses[j] for j in job_ids] == ["done"] * ALBUMS
    for job_id in job_ids:
        assert spend_refs(db, job_id) == sorted(f"item:{i}" for i in range(PHOTOS)), job_id
        with db.read() as s:
            job = s.get(JobRow, job_id)
            assert job is not None and job.set_key is not None
            assert store.head(job.set_key) is not None
            for i in range(PHOTOS):
                assert store.head(keys.output_key(job.user_id, job_id, i)) is not None
    assert any(o.startswith("api:") for o in seen) and any(not o.startswith("api:") for o in seen), seen
    check_invariants(db)
    db.dispose()


def _items(db: Database, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    with db.read() as s:
        rows = s.execute(select(JobItemRow.job_id, JobItemRow.idx, JobItemRow.status))
        return {(r.job_id, r.idx): r.status for r in rows if (r.job_id, r.idx) in wanted}
