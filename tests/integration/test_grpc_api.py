"""The gRPC JobService over a real socket, driven by the generated stub: every RPC, error codes in
status and trailing metadata, health and reflection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from protos.s3.v1 import types_pb2 as pb
from server.grpc_api.server import SERVICE_NAME, build_grpc_server
from server.grpc_api.status import ERROR_CODE_METADATA_KEY
from tests.support.grpc_calls import trailers
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Stack, jobs_pb2_grpc.JobServiceStub, grpc.Channel]]:
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield stack, jobs_pb2_grpc.JobServiceStub(channel), channel
    finally:
        channel.close()
        server.stop(1.0)
        stack.db.dispose()


def _md(token: str, request_id: str = "rid-1") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), ("x-request-id", request_id))


def _code(err: grpc.RpcError) -> str:
    return str(trailers(err).get(ERROR_CODE_METADATA_KEY))


def test_every_rpc_of_the_proto_is_implemented() -> None:
    from server.grpc_api.servicer import JobService

    methods = jpb.DESCRIPTOR.services_by_name["JobService"].methods_by_name
    base = jobs_pb2_grpc.JobServiceServicer
    missing = [m for m in methods if getattr(JobService, m) is getattr(base, m)]
    assert missing == []


def test_whole_flow_over_grpc(served: tuple[Stack, jobs_pb2_grpc.JobServiceStub, grpc.Channel]) -> None:
    stack, stub, _ = served
    anon = stub.CreateAnonUser(jpb.CreateAnonUserRequest())
    md = _md(anon.token)
    assert stub.GetMe(jpb.GetMeRequest(), metadata=md).credits == 100
    presets = stub.ListPresets(jpb.ListPresetsRequest(), metadata=md).presets
    assert [p.id for p in presets] == ["interior", "seller", "profile", "fashion"]
    interior = stub.GetPreset(jpb.GetPresetRequest(preset_id="interior"), metadata=md)
    assert len(interior.concepts) == 12 and "recolor" in interior.actions
    rule_req = jpb.CreateRuleRequest(name="white walls", preset_id="interior", protect=["Text"])
    rule_req.concepts["Wall"].action = "recolor"
    rule_req.concepts["Wall"].params.update({"value": "white"})
    rule = stub.CreateRule(rule_req, metadata=md)
    assert rule.concepts["Wall"].params["value"] == "#ffffff"
    upd = jpb.UpdateRuleRequest(rule_id=rule.rule_id, name="walls")
    assert stub.UpdateRule(upd, metadata=md).name == "walls"
    listed = stub.ListRules(jpb.ListRulesRequest(), metadata=md)
    assert (len(listed.rules), listed.rule_slots_used, listed.rule_slots_max) == (1, 1, 2)

    created = stub.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=2), metadata=md)
    assert created.status == "created" and len(created.upload_urls) == 2
    for u in created.upload_urls:
        stack.store.put(u.key, jpeg_bytes(seed=u.idx), content_type="image/jpeg")
    job = stub.ConfirmUpload(jpb.JobRef(job_id=created.job_id), metadata=md)
    assert job.status == "uploaded" and all(i.input_url for i in job.items)
    analyzed = stub.AnalyzeJob(jpb.AnalyzeJobRequest(job_id=created.job_id, concepts=["Wall"]), metadata=md)
    assert analyzed.analyzed and [i.analysis for i in analyzed.items] == ["pending", "pending"]
    listed_jobs = stub.ListJobs(jpb.ListJobsRequest(), metadata=md)
    assert [j.job_id for j in listed_jobs.jobs] == [created.job_id]
    with pytest.raises(grpc.RpcError) as err:
        stub.ExecuteJob(jpb.ExecuteJobRequest(job_id=created.job_id, rule_id=rule.rule_id), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and _code(err.value) == "INVALID_STATE"
    canceled = stub.CancelJob(jpb.JobRef(job_id=created.job_id), metadata=md)
    assert canceled.status == "canceled"
    events = list(stub.WatchJob(jpb.JobRef(job_id=created.job_id), metadata=md, timeout=5))
    assert len(events) == 1 and events[0].final and events[0].job.status == "canceled"
    assert stub.GetJob(jpb.JobRef(job_id=created.job_id), metadata=md).status == "canceled"
    assert stub.DeleteRule(jpb.DeleteRuleRequest(rule_id=rule.rule_id), metadata=md).deleted
    check_invariants(stack.db)


@pytest.mark.parametrize(
    ("call", "metadata", "status", "code"),
    [
        ("me_without_token", (), grpc.StatusCode.UNAUTHENTICATED, "AUTH_REQUIRED"),
        ("me_bad_token", (("authorization", "Bearer nope"),), grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN"),
        ("unknown_preset", None, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        ("bad_rule", None, grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR"),
        ("batch", None, grpc.StatusCode.INVALID_ARGUMENT, "BATCH_LIMIT"),
        ("callback_secret", None, grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN"),
        ("unknown_job", None, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    ],
)
def test_errors_carry_status_and_contract_code(
    served: tuple[Stack, jobs_pb2_grpc.JobServiceStub, grpc.Channel],
    call: str,
    metadata: tuple[tuple[str, str], ...] | None,
    status: grpc.StatusCode,
    code: str,
) -> None:
    _, stub, _ = served
    md = metadata if metadata is not None else _md(stub.CreateAnonUser(jpb.CreateAnonUserRequest()).token)
    calls: dict[str, Callable[[], object]] = {
        "me_without_token": lambda: stub.GetMe(jpb.GetMeRequest(), metadata=md),
        "me_bad_token": lambda: stub.GetMe(jpb.GetMeRequest(), metadata=md),
        "unknown_preset": lambda: stub.GetPreset(jpb.GetPresetRequest(preset_id="garden"), metadata=md),
        "bad_rule": lambda: stub.CreateRule(jpb.CreateRuleRequest(name="x", preset_id="interior"), metadata=md),
        "batch": lambda: stub.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=11), metadata=md),
        "callback_secret": lambda: stub.ReportItemResult(
            jpb.ReportItemResultRequest(job_id="00000000-0000-0000-0000-000000000000", idempotency_key="k"),
            metadata=(("x-callback-secret", "wrong"),),
        ),
        "unknown_job": lambda: stub.GetJob(jpb.JobRef(job_id="00000000-0000-0000-0000-000000000000"), metadata=md),
    }
    with pytest.raises(grpc.RpcError) as err:
        calls[call]()
    assert err.value.code() == status
    assert _code(err.value) == code


def test_health_and_reflection(served: tuple[Stack, jobs_pb2_grpc.JobServiceStub, grpc.Channel]) -> None:
    _, stub, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    detail = stub.GetHealth(jpb.GetHealthRequest())
    assert detail.ok and {c.name for c in detail.components} == {"database", "storage"}
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert SERVICE_NAME in names


def test_job_message_shapes_are_complete() -> None:
    assert {f.name for f in pb.JobItem.DESCRIPTOR.fields} >= {"idx", "status", "input_url", "output_url", "instances"}
