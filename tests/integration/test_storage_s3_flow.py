"""An album all the way through with ``S3_STORAGE=s3``: the S3-compatible server (moto's, in its own
process) holds every object; the client uploads and downloads through SigV4 presigned URLs.

create -> presigned PUT -> confirm -> execute -> workers (real pipeline, in-process onnxruntime
SAM3) -> done -> presigned GET of the outputs and of the set. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from PIL import Image

from server.db.tables import JobRow
from server.service.concept_action import actions_from_stored
from server.service.sweeper import purge_expired_jobs
from server.storage import keys
from server.storage.s3 import S3ObjectStore
from tests.servers.s3server import S3Endpoint
from tests.support.invariants import check_invariants
from tests.support.pipeline import WALL_WHITE, link_tiny_model, photo_jpeg, process_jobs, spend_refs
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_stack(database_url: str, tmp_path: Path, s3_endpoint: S3Endpoint) -> Iterator[Stack]:
    stack = make_stack(
        database_url,
        link_tiny_model(tmp_path / "data"),
        storage="s3",
        s3_endpoint_url=s3_endpoint.url,
        s3_bucket=f"flow-{uuid.uuid4().hex[:12]}",
        s3_region=s3_endpoint.region,
        s3_access_key_id=s3_endpoint.access_key_id,
        s3_secret_access_key=s3_endpoint.secret_access_key,
        inference="onnx",
    )
    try:
        yield stack
    finally:
        stack.db.dispose()


def _bucket_keys(endpoint: S3Endpoint, bucket: str, prefix: str) -> set[str]:
    """What the bucket holds under ``prefix``, asked of the server directly (not through the adapter)."""
    client = boto3.session.Session(
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        region_name=endpoint.region,
    ).client("s3", endpoint_url=endpoint.url)
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update(obj["Key"] for obj in page.get("Contents", []))
    return found


def test_album_through_presigned_urls_on_the_s3_store(s3_stack: Stack, s3_endpoint: S3Endpoint) -> None:
    stack = s3_stack
    assert isinstance(stack.store, S3ObjectStore)
    jobs = stack.services.jobs
    user = stack.services.accounts.create_anonymous().user.user_id
    n = 2
    created = jobs.create(user, preset_id="interior", item_count=n)
    job_id = created.job.job_id
    with httpx.Client(timeout=30) as http:
        for target in created.uploads:
            req = target.request
            assert req.method == "PUT" and req.url.startswith(s3_endpoint.url)
            assert "X-Amz-Signature=" in req.url
            sent = http.put(req.url, content=photo_jpeg(160, 120, seed=target.idx), headers=req.headers)
            assert sent.status_code == 200, sent.text

        assert jobs.confirm_upload(user, job_id).status == "uploaded"
        jobs.execute(
            user,
            job_id,
            concepts=actions_from_stored(WALL_WHITE),
        )
        stats = process_jobs(stack, [job_id], workers=2)
        assert sum(s.done for s in stats) == n + 1 and sum(s.failed for s in stats) == 0

        job = jobs.get(user, job_id)
        assert (job.status, job.done_items, job.failed_items) == ("done", n, 0)
        assert spend_refs(stack.db, job_id) == [f"item:{i}" for i in range(n)]
        assert job.set_key == keys.set_key(user, job_id) and job.items is not None

        # Every object the contract names is in the bucket, under the contract's keys.
        held = _bucket_keys(s3_endpoint, stack.settings.s3.bucket, "")
        for item in job.items:
            expected = {
                keys.input_key(user, job_id, item.idx),
                keys.output_key(user, job_id, item.idx),
                keys.preview_key(user, job_id, item.idx),
                keys.mask_key(user, job_id, item.idx, "Wall"),
                keys.instances_key(user, job_id, item.idx),
                *(r.key for r in item.renditions),
            }
            assert item.renditions and expected <= held, expected - held

        # Downloads: SigV4 presigned GETs straight from the store.
        for item in job.items:
            assert item.output_key is not None
            got = http.get(jobs.download_url(item.output_key))
            assert got.status_code == 200
            with Image.open(io.BytesIO(got.content)) as result:
                assert (result.format, result.size) == ("PNG", (160, 120))
            # The file name is signed into the URL (response-content-disposition); the store names it.
            disposition = f'inline; filename="s3-{job_id[:8]}-{item.idx}_result.png"'
            assert got.headers["content-disposition"] == disposition
        got = http.get(jobs.download_url(job.set_key))
        assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
        assert got.headers["content-disposition"] == f'attachment; filename="s3-{job_id[:8]}-set.zip"'

    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    assert manifest["job_id"] == job_id and [i["idx"] for i in manifest["items"]] == list(range(n))
    listed = {r["path"] for i in manifest["items"] for r in i["renditions"]}
    assert listed and listed | {"manifest.json"} == names
    for i in manifest["items"]:
        assert i["protect_check"]["passed"] is True
    check_invariants(stack.db)


def test_photo_swapped_after_confirm_is_not_processed_and_purge_empties_the_bucket(
    s3_stack: Stack, s3_endpoint: S3Endpoint
) -> None:
    """A SigV4 presigned PUT cannot be revoked: after confirm-upload it still writes. The sha256
    pinned at confirm makes the worker refuse the swapped photo (failed, refunded, not retried);
    once the job's retention ends the sweeper deletes every object it had in the bucket."""
    stack = s3_stack
    jobs = stack.services.jobs
    user = stack.services.accounts.create_anonymous().user.user_id
    created = jobs.create(user, preset_id="interior", item_count=2)
    job_id = created.job.job_id
    with httpx.Client(timeout=30) as http:
        for target in created.uploads:
            req = target.request
            assert http.put(req.url, content=photo_jpeg(160, 120, seed=target.idx), headers=req.headers).is_success
        jobs.confirm_upload(user, job_id)
        swap = created.uploads[1].request
        assert http.put(swap.url, content=photo_jpeg(160, 120, seed=99), headers=swap.headers).is_success
    jobs.execute(
        user,
        job_id,
        concepts=actions_from_stored(WALL_WHITE),
    )
    process_jobs(stack, [job_id], workers=1)
    job = jobs.get(user, job_id)
    assert job.items is not None and (job.status, job.done_items, job.failed_items) == ("done", 1, 1)
    swapped = job.items[1]
    assert swapped.status == "failed" and swapped.attempts == 1
    assert swapped.error == "VALIDATION_ERROR: the photo was replaced after confirm-upload"
    assert spend_refs(stack.db, job_id) == ["item:0"]
    held = set().union(
        *(_bucket_keys(s3_endpoint, stack.settings.s3.bucket, p) for p in keys.job_prefixes(user, job_id))
    )
    assert keys.output_key(user, job_id, 0) in held and keys.set_key(user, job_id) in held
    assert stack.services.accounts.me(user).stored_bytes > 0

    with stack.db.write() as s:
        row = s.get(JobRow, job_id)
        assert row is not None and row.finished_at is not None
        row.finished_at -= timedelta(seconds=stack.settings.sweeper.finished_retention_s + 1)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 1
    for prefix in keys.job_prefixes(user, job_id):
        assert _bucket_keys(s3_endpoint, stack.settings.s3.bucket, prefix) == set()
    assert stack.services.accounts.me(user).stored_bytes == 0
    check_invariants(stack.db)
