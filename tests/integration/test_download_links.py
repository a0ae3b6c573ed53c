"""Download links through the REST shim on the local store: every URL says when it expires, an
expired link is refused, and reading the job again gives fresh links to the same bytes, each named
for saving (``Content-Disposition``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_rest.app import create_app
from gateway_rest.objects import object_routes
from server.grpc_api.server import build_grpc_server
from server.ports import free_port
from server.storage.local import LocalObjectStore
from tests.support.pipeline import link_tiny_model, photo_jpeg, process_jobs
from tests.support.stack import Stack, make_stack
from tests.unit.gateway.live import run_server

pytestmark = pytest.mark.integration

TTL_S = 2


@dataclass
class Rest:
    http: httpx.Client
    stack: Stack


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[Rest]:
    port = free_port()
    stack = make_stack(
        f"sqlite:///{tmp_path / 's3.db'}",
        link_tiny_model(tmp_path / "data"),
        http_port=port,
        inference="onnx",
        download_url_ttl_s=TTL_S,
    )
    grpc_server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    grpc_server.start()
    try:
        assert isinstance(stack.store, LocalObjectStore)
        app = create_app(grpc_target=f"127.0.0.1:{grpc_server.port}", object_routes=object_routes(stack.store))
        with run_server(app, port=port) as base, httpx.Client(base_url=base, timeout=30) as http:
            yield Rest(http, stack)
    finally:
        grpc_server.stop(1.0)
        stack.db.dispose()


def _data(response: httpx.Response, status: int = 200) -> Any:
    body = response.json()
    assert response.status_code == status, body
    return body["data"]


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_links_state_their_expiry_and_are_fresh_on_every_read(rest: Rest) -> None:
    http = rest.http
    auth = {"Authorization": f"Bearer {_data(http.post('/auth/anon'), 201)['token']}"}
    before = datetime.now(UTC)
    created = _data(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
    job_id = created["job_id"]
    [upload] = created["upload_urls"]
    upload_ttl = min(rest.stack.settings.storage.upload_url_ttl_s, rest.stack.settings.jobs.upload_deadline_s)
    assert before < _when(upload["expires_at"]) <= before + timedelta(seconds=upload_ttl + 2)
    assert _data(http.put(upload["url"], content=photo_jpeg(160, 120), headers=upload["headers"]))
    _data(http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
    execute = {"concepts": {"Wall": {"action": "recolor", "value": "white"}}}
    _data(http.post(f"/jobs/{job_id}/execute", json=execute, headers=auth))
    process_jobs(rest.stack, [job_id], workers=1)

    read_at = datetime.now(UTC)
    job = _data(http.get(f"/jobs/{job_id}", headers=auth))
    assert job["status"] == "done" and job["set_url"]
    expires = _when(job["urls_expire_at"])
    assert read_at - timedelta(seconds=1) <= expires - timedelta(seconds=TTL_S) <= read_at + timedelta(seconds=1)
    got = http.get(job["set_url"])
    assert got.status_code == 200 and got.content[:2] == b"PK"
    assert got.headers["content-disposition"] == f'attachment; filename="s3-{job_id[:8]}-set.zip"'
    [item] = job["items"]
    image = http.get(item["output_url"])
    assert image.status_code == 200
    assert image.headers["content-disposition"] == f'inline; filename="s3-{job_id[:8]}-0_result.png"'
    rendition = item["renditions"][0]
    named = http.get(rendition["url"]).headers["content-disposition"]
    assert named == f'inline; filename="s3-{job_id[:8]}-0-{rendition["template_id"]}.{rendition["format"]}"'

    # The stated instant holds: the link works until then and is refused after it.
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.1)
    expired = http.get(job["set_url"])
    assert expired.status_code == 403 and expired.json()["error"]["code"] == "FORBIDDEN"

    again = _data(http.get(f"/jobs/{job_id}", headers=auth))
    assert again["set_url"] != job["set_url"] and _when(again["urls_expire_at"]) > expires
    fresh = http.get(again["set_url"])
    assert fresh.status_code == 200 and fresh.content == got.content


def test_the_file_name_is_part_of_the_signature(rest: Rest) -> None:
    store = rest.stack.store
    assert isinstance(store, LocalObjectStore)
    store.put("sets/u/j/set.zip", b"PK-zip", content_type="application/zip")
    url = store.presign_get("sets/u/j/set.zip", expires_s=60, filename="album.zip")
    assert rest.http.get(url).headers["content-disposition"] == 'attachment; filename="album.zip"'
    renamed = rest.http.get(url.replace("filename=album.zip", "filename=other.zip"))
    assert renamed.status_code == 403
    dropped = rest.http.get(url.replace("filename=album.zip&", ""))
    assert dropped.status_code == 403
