"""The JobService's metrics on SQLite and PostgreSQL: queue depth and states counted from the
database, gRPC counters from the real interceptor, the endpoint over HTTP, and inference timing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import httpx
import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from protos.s3.v1 import admin_pb2 as apb
from protos.s3.v1 import admin_pb2_grpc, jobs_pb2_grpc
from protos.s3.v1 import jobs_pb2 as jpb
from server.db.engine import Database
from server.errors import InferenceUnavailable
from server.grpc_api.server import build_grpc_server
from server.inference.port import Instance
from server.metrics import ServiceMetrics
from server.metrics.http import start_metrics_endpoint
from server.metrics.inference import InferenceMetrics, TimedSegmenter
from server.work.queue import WorkQueue
from tests.support.fake_segmenter import FakeSegmenter
from tests.support.pipeline import queued_job
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _scrape(metrics: ServiceMetrics) -> Samples:
    endpoint = start_metrics_endpoint(metrics.registry, host="127.0.0.1", port=0)
    assert endpoint is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=10)
    finally:
        endpoint.close()
    assert response.status_code == 200
    return _parse(response.text)


@pytest.fixture
def slow_retry_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    # A retried item waits a minute: long enough to be seen waiting out its backoff.
    built = make_stack(database_url, tmp_path / "data", retry_backoff_s=60.0)
    try:
        yield built
    finally:
        built.db.dispose()


def test_queue_depth_and_states_come_from_the_database(slow_retry_stack: Stack) -> None:
    stack = slow_retry_stack
    metrics = ServiceMetrics.create(stack.db)
    empty = _scrape(metrics)
    assert _get(empty, "s3_queue_depth", stage="execute", state="ready") == 0
    assert _get(empty, "s3_jobs", status="running") == 0
    assert _get(empty, "s3_metrics_database_up") == 1

    queued_job(stack, 3)
    user, other = queued_job(stack, 1)
    queue = WorkQueue(stack.db, stack.settings.queue)
    leased = queue.claim("w-1")
    failed = queue.claim("w-2")
    assert leased is not None and failed is not None
    queue.fail(failed, "transient", retryable=True)  # back in the queue after a backoff
    samples = _scrape(metrics)
    assert _get(samples, "s3_queue_depth", stage="execute", state="ready") == 2
    assert _get(samples, "s3_queue_depth", stage="execute", state="leased") == 1
    assert _get(samples, "s3_queue_depth", stage="execute", state="waiting") == 1
    assert _get(samples, "s3_queue_depth", stage="analyze", state="ready") == 0
    assert _get(samples, "s3_active_job_items", status="queued") == 3
    assert _get(samples, "s3_active_job_items", status="running") == 1
    assert _get(samples, "s3_jobs", status="queued") == 2

    stack.services.jobs.cancel(user, other)  # a finished job's items leave the queue and the gauges
    samples = _scrape(metrics)
    assert _get(samples, "s3_jobs", status="canceled") == 1
    assert _get(samples, "s3_active_job_items", status="queued") == 2
    assert (
        _get(samples, "s3_queue_depth", stage="execute", state="ready")
        + _get(samples, "s3_queue_depth", stage="execute", state="waiting")
        == 2
    )


def test_a_database_outage_is_a_gauge_not_a_failed_scrape() -> None:
    broken = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    try:
        samples = _scrape(ServiceMetrics.create(broken))
    finally:
        broken.dispose()
    assert _get(samples, "s3_metrics_database_up") == 0
    assert not any(name == "s3_jobs" for name, _ in samples)


def test_grpc_counters_by_method_and_code(stack: Stack) -> None:
    metrics = ServiceMetrics.create(stack.db)
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=4, metrics=metrics.rpc)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            user = jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
            for _ in range(3):
                jobs.GetMe(jpb.GetMeRequest(), metadata=(("authorization", f"Bearer {user.token}"),))
            for _ in range(2):
                with pytest.raises(grpc.RpcError):
                    admin.GetUser(apb.GetUserRequest(user_id=user.user_id), metadata=(("x-admin-token", "no"),))
            events = jobs.WatchJob(
                jpb.JobRef(job_id="00000000-0000-0000-0000-000000000000"),
                metadata=(("authorization", f"Bearer {user.token}"),),
            )
            with pytest.raises(grpc.RpcError):
                list(events)
    finally:
        server.stop(1.0)
    samples = _scrape(metrics)
    assert _get(samples, "s3_grpc_requests_total", method="/s3.v1.JobService/GetMe", code="OK") == 3
    assert _get(samples, "s3_grpc_requests_total", method="/s3.v1.AdminService/GetUser", code="FORBIDDEN") == 2
    assert _get(samples, "s3_grpc_requests_total", method="/s3.v1.JobService/WatchJob", code="NOT_FOUND") == 1
    count = _get(samples, "s3_grpc_request_duration_seconds_count", method="/s3.v1.JobService/GetMe", code="OK")
    assert count == 3
    assert _get(samples, "s3_grpc_request_duration_seconds_sum", method="/s3.v1.JobService/GetMe", code="OK") > 0


class _Segmenter(FakeSegmenter):
    """A segmenter at the port boundary: answers after ``delay_s``, or fails."""

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False) -> None:
        self._delay_s = delay_s
        self._fail = fail

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        await asyncio.sleep(self._delay_s)
        if self._fail:
            raise InferenceUnavailable("Triton is down")
        return {c: [] for c in concepts}


def test_inference_latency_by_outcome() -> None:
    registry = CollectorRegistry()
    inference = InferenceMetrics(registry)
    image = np.zeros((8, 8, 3), dtype=np.uint8)

    async def run() -> None:
        ok = TimedSegmenter(_Segmenter(delay_s=0.02), inference)
        assert await ok.segment(image, {"Wall": ["wall"]}) == {"Wall": []}
        with pytest.raises(InferenceUnavailable):
            await TimedSegmenter(_Segmenter(fail=True), inference).segment(image, {"Wall": ["wall"]})
        slow = asyncio.create_task(TimedSegmenter(_Segmenter(delay_s=5), inference).segment(image, {}))
        await asyncio.sleep(0.01)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow

    asyncio.run(run())
    samples = _parse(generate_latest(registry).decode())
    model = {"model": "fake:sam3"}
    assert _get(samples, "s3_inference_duration_seconds_count", **model, outcome="ok") == 1
    assert _get(samples, "s3_inference_duration_seconds_sum", **model, outcome="ok") >= 0.02
    assert _get(samples, "s3_inference_duration_seconds_count", **model, outcome="error") == 1
    assert _get(samples, "s3_inference_duration_seconds_count", **model, outcome="canceled") == 1


def test_a_taken_port_leaves_the_service_running_without_metrics() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert start_metrics_endpoint(CollectorRegistry(), host="127.0.0.1", port=taken.getsockname()[1]) is None
