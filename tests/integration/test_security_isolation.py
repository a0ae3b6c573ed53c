"""Isolation between users, presigned URLs, object keys and the callback endpoint, over real sockets.

- Every route with an id answers user B exactly as for an id that does not exist (404 NOT_FOUND, the
  same message shape), for user A's job and rule; A's state is untouched.
- A presigned URL is bound to its method, key, content type and expiry: changing any one is 403.
- Object keys are built by the service only: no request can steer one out of its user and job.
- Callbacks: another job's output key, an unknown item, a finished item or a terminal job are
  refused; a replay returns the first answer and moves no credit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, err, live_rest, ok, sign_up, upload_all
from tests.support.stack import jpeg_bytes

pytestmark = pytest.mark.integration

WALL = {"Wall": {"action": "recolor", "value": "white"}}
RULE = {"name": "mine", "preset_id": "interior", "concepts": WALL}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRest]:
    root: Path = tmp_path_factory.mktemp("isolation")
    with live_rest(f"sqlite:///{root / 's3.db'}", root / "data") as served:
        yield served


@pytest.fixture
def http(live: LiveRest) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        yield client


def _uploaded_job(http: httpx.Client, auth: dict[str, str], n: int = 2) -> dict[str, Any]:
    created: dict[str, Any] = ok(http.post("/jobs", json={"preset": "interior", "item_count": n}, headers=auth), 201)
    upload_all(http, created, [jpeg_bytes(seed=i) for i in range(n)])
    ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=auth))
    return created


def _queued_job(http: httpx.Client, auth: dict[str, str], n: int = 2) -> dict[str, Any]:
    created = _uploaded_job(http, auth, n)
    ok(http.post(f"/jobs/{created['job_id']}/execute", json={"concepts": WALL}, headers=auth))
    return created


def _id_routes(job_id: str, rule_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/jobs/{job_id}", None),
        ("POST", f"/jobs/{job_id}/confirm-upload", None),
        ("POST", f"/jobs/{job_id}/analyze", {"concepts": ["Wall"]}),
        ("POST", f"/jobs/{job_id}/execute", {"concepts": WALL}),
        ("POST", f"/jobs/{job_id}/cancel", None),
        ("GET", f"/jobs/{job_id}/events", None),
        ("PUT", f"/rules/{rule_id}", {"name": "taken"}),
        ("DELETE", f"/rules/{rule_id}", None),
    ]


def _answer(http: httpx.Client, method: str, path: str, body: Any, auth: dict[str, str]) -> tuple[int, str]:
    response = http.request(method, path, json=body, headers=auth)
    return response.status_code, response.json()["error"]["code"]


def test_another_users_ids_are_indistinguishable_from_missing_ones(live: LiveRest, http: httpx.Client) -> None:
    owner, _ = sign_up(http)
    intruder, _ = sign_up(http)
    job = _uploaded_job(http, owner)
    job_id = job["job_id"]
    rule_id = ok(http.post("/rules", json=RULE, headers=owner), 201)["rule_id"]
    before = ok(http.get(f"/jobs/{job_id}", headers=owner))

    for (method, path, body), (_, ghost_path, _) in zip(
        _id_routes(job_id, rule_id), _id_routes(str(uuid.uuid4()), str(uuid.uuid4())), strict=True
    ):
        theirs = _answer(http, method, path, body, intruder)
        missing = _answer(http, method, ghost_path, body, intruder)
        assert theirs == missing == (404, "NOT_FOUND"), (method, path, theirs, missing)

    # The intruder's own job cannot borrow the owner's rule either.
    own = _uploaded_job(http, intruder, 1)
    body = {"rule_id": rule_id}
    err(http.post(f"/jobs/{own['job_id']}/execute", json=body, headers=intruder), 404, "NOT_FOUND")
    assert ok(http.get("/jobs", headers=intruder))["jobs"][0]["job_id"] == own["job_id"]
    assert len(ok(http.get("/jobs", headers=intruder))["jobs"]) == 1
    assert ok(http.get("/rules", headers=intruder))["rules"] == []

    after = ok(http.get(f"/jobs/{job_id}", headers=owner))
    assert (after["status"], after["updated_at"]) == (before["status"], before["updated_at"])
    assert ok(http.get("/rules", headers=owner))["rules"][0]["name"] == "mine"
    check_invariants(live.stack.db)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


def test_presigned_urls_are_bound_to_method_key_type_and_expiry(http: httpx.Client) -> None:
    owner, _ = sign_up(http)
    created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=owner), 201)
    put0, put1 = created["upload_urls"]
    photo = jpeg_bytes()

    # Another key with the same signature: the next item's, another user's, one outside inputs/.
    other_key = put0["url"].replace(put0["key"], put1["key"])
    assert other_key != put0["url"]
    err(http.put(other_key, content=photo, headers=put0["headers"]), 403, "FORBIDDEN")
    for key in ("inputs/someone/else/0.jpg", put0["key"].replace("inputs/", "outputs/", 1)):
        err(http.put(put0["url"].replace(put0["key"], key), content=photo, headers=put0["headers"]), 403, "FORBIDDEN")
    # The right key with another method, content type, a later expiry or no signature.
    err(http.get(put0["url"]), 403, "FORBIDDEN")
    err(http.put(put0["url"], content=photo, headers={"Content-Type": "text/html"}), 403, "FORBIDDEN")
    later = _with_query(put0["url"], expires=str(int(parse_qs(urlsplit(put0["url"]).query)["expires"][0]) + 3600))
    err(http.put(later, content=photo, headers=put0["headers"]), 403, "FORBIDDEN")
    err(http.put(put0["url"].split("?")[0], content=photo, headers=put0["headers"]), 403, "FORBIDDEN")
    err(http.put(_with_query(put0["url"], expires="1"), content=photo, headers=put0["headers"]), 403, "FORBIDDEN")

    ok(http.put(put0["url"], content=photo, headers=put0["headers"]))
    ok(http.put(put1["url"], content=photo, headers=put1["headers"]))
    job = ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=owner))
    get0 = job["items"][0]["input_url"]
    assert http.get(get0).content == photo
    # A download URL cannot upload, nor read the neighbour.
    err(http.put(get0, content=b"overwrite", headers=put0["headers"]), 403, "FORBIDDEN")
    err(http.get(get0.replace(put0["key"], put1["key"])), 403, "FORBIDDEN")
    assert http.get(get0).content == photo


@pytest.mark.parametrize(
    "path",
    [
        "/objects/../secrets/jwt_secret",
        "/objects/%2e%2e/secrets/jwt_secret",
        "/objects/inputs/%2e%2e/%2e%2e/secrets/jwt_secret",
        "/objects//etc/passwd",
        "/objects/%2Fetc%2Fpasswd",
        "/objects/inputs/a/b/0.jpg~meta",
    ],
)
def test_object_paths_cannot_escape_the_store(http: httpx.Client, path: str) -> None:
    response = http.get(httpx.URL(http.base_url.join("/")).copy_with(raw_path=path.encode()))
    assert response.status_code in (403, 404), (path, response.status_code)
    assert response.json()["success"] is False
    assert b"secret" not in response.content.replace(b"secrets/jwt_secret", b"")


def test_object_keys_cannot_be_steered_by_input(live: LiveRest, http: httpx.Client) -> None:
    owner, user_id = sign_up(http)
    created = ok(
        http.post("/jobs", json={"preset": "interior", "item_count": 1, "content_types": ["image/png"]}, headers=owner),
        201,
    )
    # Keys come from the service alone: the user's and job's ids and the index (the contract's layout).
    key = f"inputs/{user_id}/{created['job_id']}/0.jpg"
    assert created["upload_urls"][0]["key"] == key
    upload_all(http, created, [jpeg_bytes()])
    ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=owner))
    for concepts in (["../../../etc"], ["Wall/../../x"], ["/abs"]):
        err(
            http.post(f"/jobs/{created['job_id']}/analyze", json={"concepts": concepts}, headers=owner),
            400,
            "VALIDATION_ERROR",
        )
    for bad in ({"output_set": "../../sets"}, {"concepts": {"../Wall": {"action": "blur"}}}):
        err(http.post(f"/jobs/{created['job_id']}/execute", json=bad, headers=owner), 400, "VALIDATION_ERROR")
    root = live.stack.settings.objects_dir
    stored = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "~" not in p.name]
    assert [p for p in stored if user_id in p] == [key]
    assert not any(".." in p or p.startswith("/") for p in stored)


def test_callbacks_are_refused_outside_their_item_and_replays_are_no_ops(live: LiveRest, http: httpx.Client) -> None:
    secret = {"X-Callback-Secret": str(live.stack.settings.auth.callback_secret)}
    owner, owner_id = sign_up(http)
    other, other_id = sign_up(http)
    mine = _queued_job(http, owner)["job_id"]
    theirs = _queued_job(http, other)["job_id"]
    prefix = f"outputs/{owner_id}/{mine}/"

    def report(job_id: str, key: str, idx: int, status: str = "done", output_key: str = "") -> httpx.Response:
        body = {
            "idempotency_key": key,
            "idx": idx,
            "status": status,
            "output_key": output_key or f"{prefix}{idx}_result.png",
        }
        return http.post(f"/jobs/{job_id}/callback", json=body, headers=secret)

    # Another job's item, or an output key outside this job, or a job that does not exist.
    for output_key in (
        f"outputs/{other_id}/{theirs}/0_result.png",
        f"{prefix}../../{other_id}/{theirs}/0_result.png",
        "/etc/passwd",
        f"inputs/{owner_id}/{mine}/0.jpg",
    ):
        err(report(mine, f"k-{output_key}"[:100], 0, output_key=output_key), 400, "VALIDATION_ERROR")
    err(report(str(uuid.uuid4()), "k-ghost", 0), 404, "NOT_FOUND")
    err(report("not-a-uuid", "k-ghost", 0), 404, "NOT_FOUND")
    err(report(mine, "k-unknown-item", 99), 404, "NOT_FOUND")
    err(report(mine, "k-negative", -1), 404, "NOT_FOUND")
    err(
        http.post(f"/jobs/{mine}/callback", json={"idempotency_key": "k", "idx": 0, "status": "done"}), 403, "FORBIDDEN"
    )

    first = ok(report(mine, "k-0", 0))
    assert (first["item_status"], first["duplicate"]) == ("done", False)
    credits = ok(http.get("/me", headers=owner))
    for _ in range(3):
        replay = ok(report(mine, "k-0", 0))
        assert replay == {**first, "duplicate": True}
    err(report(mine, "k-0-again", 0), 409, "INVALID_STATE")  # a finished item takes no second result
    assert ok(http.get("/me", headers=owner)) == credits

    ok(http.post(f"/jobs/{mine}/cancel", headers=owner))
    err(report(mine, "k-1", 1), 409, "INVALID_STATE")  # terminal job
    assert ok(report(mine, "k-0", 0))["duplicate"] is True  # a replay still gets its first answer
    job = ok(http.get(f"/jobs/{mine}", headers=owner))
    assert (job["status"], job["done_items"], job["credits_spent"]) == ("canceled", 1, 1)
    assert ok(http.get(f"/jobs/{theirs}", headers=other))["done_items"] == 0
    check_invariants(live.stack.db)
