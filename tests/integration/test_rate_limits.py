"""Rate limits across replicas: two ``python -m stack.serve`` processes on real loopback sockets,
one database, one real Redis holding the counters. What one process counts, the other enforces."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from server.config import Settings
from server.ports import free_port
from tests.servers.redis import RedisServer, run_redis
from tests.support.live_rest import bearer, check_envelope
from tests.support.pipeline import link_tiny_model
from tests.support.processes import Child, child, service_env, wait_http_ready
from tests.support.rate_windows import clear_of_window_edges
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

SIGNUPS_PER_ADDRESS = 3
REQUESTS_PER_USER = 5


def _base(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.http.port}"


@contextmanager
def _replica(settings: Settings, redis: RedisServer, logs: Path, name: str, **extra: str) -> Iterator[Child]:
    env = service_env(
        settings,
        S3_RATE_LIMIT_STORAGE_URL=redis.url,
        S3_RATE_LIMIT_SIGNUP_ADDRESS=f"{SIGNUPS_PER_ADDRESS}/600",
        S3_RATE_LIMIT_USER=f"{REQUESTS_PER_USER}/600",
        S3_METRICS_PORT="0",
        **extra,
    )
    with child("stack.serve", env, logs, name=name) as process:
        wait_http_ready(_base(settings), process)
        yield process


def _refused(response: httpx.Response) -> None:
    body = check_envelope(response)
    assert response.status_code == 429 and body["error"]["code"] == "RATE_LIMITED", body
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-remaining"] == "0"


def test_two_replicas_share_the_limits_through_redis(tmp_path: Path) -> None:
    data_dir = link_tiny_model(tmp_path / "data")
    a = make_settings(
        data_dir,
        database_url=f"sqlite:///{tmp_path / 's3.db'}",
        http_port=free_port(),
        grpc_port=free_port(),
        inference="onnx",
        workers=0,
    )
    b = a.changed(http_port=free_port(), grpc_port=free_port())
    with ExitStack() as stack:
        redis = stack.enter_context(run_redis())
        # Replica A sits behind a reverse proxy on 127.0.0.1; replica B trusts no proxy.
        stack.enter_context(_replica(a, redis, tmp_path / "logs", "serve-a", S3_TRUSTED_PROXIES="127.0.0.1"))
        stack.enter_context(_replica(b, redis, tmp_path / "logs", "serve-b"))
        http_a = stack.enter_context(httpx.Client(base_url=_base(a), timeout=30))
        http_b = stack.enter_context(httpx.Client(base_url=_base(b), timeout=30))

        clear_of_window_edges([600], margin_s=15.0)  # the counting below stays within one window
        # Sign-ups from 127.0.0.1, spread over both replicas, count against one bucket.
        tokens = [http_a.post("/auth/anon").json()["data"]["token"] for _ in range(SIGNUPS_PER_ADDRESS - 1)]
        created = http_b.post("/auth/anon")
        assert created.status_code == 201, created.text
        assert created.headers["ratelimit-remaining"] == "0"
        tokens.append(created.json()["data"]["token"])
        _refused(http_a.post("/auth/anon"))
        _refused(http_b.post("/auth/anon"))

        # X-Forwarded-For: A believes its proxy, so each forwarded client has its own bucket;
        # B sees the header from an untrusted peer and ignores it: a made-up address gets nothing.
        forwarded = http_a.post("/auth/anon", headers={"X-Forwarded-For": "192.0.2.10"})
        assert forwarded.status_code == 201, forwarded.text
        _refused(http_b.post("/auth/anon", headers={"X-Forwarded-For": "192.0.2.11"}))

        # One user's budget is shared by the replicas too, and other users keep theirs.
        user, other = bearer(tokens[0]), bearer(tokens[1])
        answers = [http.get("/me", headers=user) for http in (http_a, http_b, http_a, http_b, http_a)]
        assert [r.status_code for r in answers] == [200] * REQUESTS_PER_USER, [r.text for r in answers]
        _refused(http_b.get("/me", headers=user))
        assert http_b.get("/me", headers=other).status_code == 200

        # Without its store the limiter steps aside: both replicas go on answering, unlimited.
        redis.process.terminate()
        redis.process.wait(timeout=15)
        for http in (http_a, http_b):
            after = http.get("/me", headers=user)
            assert after.status_code == 200, after.text
            assert "ratelimit-limit" not in after.headers
