"""The gRPC JobService's early refusals and its thread use, over a real socket: credentials and size
caps are checked from metadata before a request is decoded, and open WatchJob streams hold none of
the threads that plain calls need."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from protos.s3.v1 import admin_pb2, jobs_pb2, jobs_pb2_grpc, worker_pb2
from protos.s3.v1 import jobs_pb2 as jpb
from server.grpc_api.guards import DEFAULT_MAX_REQUEST_BYTES, METHOD_RULES, RequestGuard
from server.grpc_api.server import GrpcServer, build_grpc_server
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, RETRY_AFTER_METADATA_KEY
from server.service.streams import StreamPolicy
from tests.support.grpc_calls import cancel, trailers
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

BIG = 6 * 1024 * 1024
CALLBACK_SECRET = "callback-" + "c" * 40  # tests/support/stack.py's


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    try:
        yield built
    finally:
        built.db.dispose()


class Decodes:
    """Counts the decodes of one request message type (the server's deserializer is ``FromString``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, message: type) -> None:
        self.sizes: list[int] = []
        original: Callable[[bytes], object] = message.FromString  # type: ignore[attr-defined]

        def counting(data: bytes) -> object:
            self.sizes.append(len(data))
            return original(data)

        monkeypatch.setattr(message, "FromString", staticmethod(counting))


def _serve(stack: Stack, *, max_workers: int = 4) -> Iterator[tuple[GrpcServer, jobs_pb2_grpc.JobServiceStub]]:
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=max_workers)
    server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    try:
        yield server, jobs_pb2_grpc.JobServiceStub(channel)
    finally:
        channel.close()
        server.stop(1.0)


def _code(err: grpc.RpcError) -> str:
    return str(trailers(err).get(ERROR_CODE_METADATA_KEY))


def _big_callback(job_id: str = "00000000-0000-0000-0000-000000000000") -> jpb.ReportItemResultRequest:
    return jpb.ReportItemResultRequest(job_id=job_id, idempotency_key="k", idx=0, status="failed", error="x" * BIG)


def test_an_unauthenticated_big_callback_is_refused_before_decoding(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = Decodes(monkeypatch, jpb.ReportItemResultRequest)
    for _server, stub in _serve(stack):
        for metadata in ((), (("x-callback-secret", "wrong-" + "w" * 40),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ReportItemResult(_big_callback(), metadata=metadata, timeout=30)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert _code(refused.value) == "FORBIDDEN"
        assert decodes.sizes == []
        # The same message with the right secret is decoded (so the counter does see decodes) and
        # reaches the service, which does not know the job.
        with pytest.raises(grpc.RpcError) as answered:
            stub.ReportItemResult(_big_callback(), metadata=(("x-callback-secret", CALLBACK_SECRET),), timeout=30)
        assert _code(answered.value) == "NOT_FOUND"
        assert len(decodes.sizes) == 1 and decodes.sizes[0] > BIG


def test_user_calls_are_refused_from_metadata_and_capped_per_method(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = Decodes(monkeypatch, jpb.CreateRuleRequest)
    token = stack.services.accounts.create_anonymous(None).token.token
    auth = (("authorization", f"Bearer {token}"),)
    for _server, stub in _serve(stack):
        big = jpb.CreateRuleRequest(name="n" * BIG, preset_id="interior")
        for metadata, code in (((), "AUTH_REQUIRED"), ((("authorization", "Bearer nope"),), "INVALID_TOKEN")):
            with pytest.raises(grpc.RpcError) as refused:
                stub.CreateRule(big, metadata=metadata, timeout=30)
            assert _code(refused.value) == code
        # Authenticated but over the method's cap: refused undecoded too.
        with pytest.raises(grpc.RpcError) as too_big:
            stub.CreateRule(big, metadata=auth, timeout=30)
        assert _code(too_big.value) == "PAYLOAD_TOO_LARGE"
        assert too_big.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert decodes.sizes == []
        # Under the cap, the request is decoded and validated by the service as before.
        with pytest.raises(grpc.RpcError) as invalid:
            stub.CreateRule(jpb.CreateRuleRequest(name="n" * 100, preset_id="nope"), metadata=auth, timeout=30)
        assert _code(invalid.value) == "VALIDATION_ERROR"
        assert decodes.sizes and max(decodes.sizes) < DEFAULT_MAX_REQUEST_BYTES


def test_the_guard_table_names_only_methods_that_exist() -> None:
    known = {
        f"/{service.full_name}/{method.name}"
        for module in (jobs_pb2, admin_pb2, worker_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(METHOD_RULES) <= known
    assert METHOD_RULES["/s3.v1.JobService/ReportItemResult"].credential == "callback"
    assert METHOD_RULES["/s3.v1.JobService/WatchJob"].credential == "watcher"  # bearer or stream token


def test_open_streams_hold_none_of_the_threads_plain_calls_need(stack: Stack) -> None:
    """40 WatchJob streams against a server with 2 handler threads: GetMe still answers at once (a
    thread per stream, as before, would leave it waiting past its deadline)."""
    services = replace(stack.services, streams=StreamPolicy(max_per_user=40))
    stack = replace(stack, services=services)
    created = stack.services.accounts.create_anonymous(None)
    user_id = created.user.user_id
    job = stack.services.jobs.create(user_id, preset_id="interior", item_count=1)
    auth = (("authorization", f"Bearer {created.token.token}"),)
    for _server, stub in _serve(stack, max_workers=2):
        calls = [stub.WatchJob(jpb.JobRef(job_id=job.job.job_id), metadata=auth, timeout=60) for _ in range(40)]
        try:
            assert all(next(iter(call)).job.status == "created" for call in calls)
            for _ in range(20):
                assert stub.GetMe(jpb.GetMeRequest(), metadata=auth, timeout=2).user_id == user_id
            # One stream more than the cap: STREAM_LIMIT, with when to retry.
            with pytest.raises(grpc.RpcError) as refused:
                next(iter(stub.WatchJob(jpb.JobRef(job_id=job.job.job_id), metadata=auth, timeout=10)))
            assert _code(refused.value) == "STREAM_LIMIT"
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert trailers(refused.value)[RETRY_AFTER_METADATA_KEY] == str(StreamPolicy().retry_after_s)
            stack.services.jobs.cancel(user_id, job.job.job_id)
            finals = [next(iter(call)) for call in calls]
            assert all(e.final and e.job.status == "canceled" for e in finals)
        finally:
            for call in calls:
                cancel(call)


def test_a_stream_is_opened_by_a_bearer_or_a_stream_token_and_nothing_else(stack: Stack) -> None:
    guard = RequestGuard(stack.services)
    rule = RequestGuard.rule("/s3.v1.JobService/WatchJob")
    user = stack.services.accounts.create_anonymous(None)
    job = stack.services.jobs.create(user.user.user_id, preset_id="interior", item_count=1)
    stream = stack.services.tokens.issue_stream(user.user.user_id, job.job.job_id)
    assert guard.refusal(rule, [("authorization", f"Bearer {user.token.token}")]) is None
    assert guard.refusal(rule, [("x-stream-token", stream.token)]) is None
    refused = guard.refusal(rule, [])
    assert refused is not None and refused.code == "AUTH_REQUIRED"
    forged = guard.refusal(rule, [("x-stream-token", user.token.token)])  # an access token is no stream token
    assert forged is not None and forged.code == "INVALID_TOKEN"
