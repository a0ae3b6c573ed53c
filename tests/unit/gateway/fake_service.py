"""A JobService that answers from a script, served by a real gRPC server on a loopback port.

The shim is only a translation layer, so its unit tests need the gRPC boundary to be real (stub,
channel, status, trailing metadata) but not the service behind it. Domain errors are sent the way the
server's interceptor sends them: status from ``server.grpc_api.status`` plus the ``s3-error-code``
trailing metadata (the integration tests check the real interceptor end to end).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from protos.s3.v1 import types_pb2 as pb
from server.errors import S3Error
from server.grpc_api.metadata_keys import REPLAYED
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, GRPC_STATUS, RETRY_AFTER_METADATA_KEY


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, str]


@dataclass
class Script:
    """What the fake answers. ``error``: raised by every RPC (a domain error, translated by the real
    interceptor). ``abort``: a bare gRPC status without the contract-code metadata."""

    error: S3Error | None = None
    abort: tuple[grpc.StatusCode, str] | None = None
    job: pb.Job = field(default_factory=lambda: pb.Job(job_id="j1", status="created", preset="interior"))
    events: list[jpb.JobEvent] = field(default_factory=list)
    event_gap_s: float = 0.0
    fail_after_events: S3Error | None = None
    health: jpb.GetHealthResponse = field(default_factory=lambda: jpb.GetHealthResponse(ok=True))
    calls: list[Call] = field(default_factory=list)
    watch_ended: threading.Event = field(default_factory=threading.Event)
    replayed: bool = False
    """Answer like a replay of a kept idempotent answer (initial metadata ``idempotent-replayed``)."""


class FakeJobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def _answer(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.script.calls.append(Call(method, request, metadata))
        if self.script.abort is not None:
            context.abort(*self.script.abort)
        if self.script.error is not None:
            code = self.script.error.code
            trailers = [(ERROR_CODE_METADATA_KEY, code)]
            if self.script.error.retry_after_s is not None:
                trailers.append((RETRY_AFTER_METADATA_KEY, str(self.script.error.retry_after_s)))
            context.set_trailing_metadata(tuple(trailers))
            context.abort(GRPC_STATUS[code], self.script.error.message)
        if self.script.replayed:
            context.send_initial_metadata(((REPLAYED, "true"),))

    def GetHealth(self, request: Any, context: grpc.ServicerContext) -> jpb.GetHealthResponse:
        self._answer("GetHealth", request, context)
        return self.script.health

    def CreateAnonUser(self, request: Any, context: grpc.ServicerContext) -> jpb.CreateAnonUserResponse:
        self._answer("CreateAnonUser", request, context)
        return jpb.CreateAnonUserResponse(token="t", user_id="u1", plan="free", credits=100)

    def RefreshSession(self, request: Any, context: grpc.ServicerContext) -> jpb.RefreshSessionResponse:
        self._answer("RefreshSession", request, context)
        return jpb.RefreshSessionResponse(
            token="t2", user_id="u1", expires_at="2026-01-01T00:15:00Z", refresh_token="s3r_next"
        )

    def CancelJob(self, request: Any, context: grpc.ServicerContext) -> pb.Job:
        self._answer("CancelJob", request, context)
        return self.script.job

    def GetMe(self, request: Any, context: grpc.ServicerContext) -> pb.UserState:
        self._answer("GetMe", request, context)
        return pb.UserState(user_id="u1", plan="free", credits=100, max_concurrency=1, rule_slots_max=2)

    def CreateRule(self, request: Any, context: grpc.ServicerContext) -> pb.Rule:
        self._answer("CreateRule", request, context)
        rule = pb.Rule(rule_id="r1", name=request.name, preset_id=request.preset_id, protect=request.protect)
        for concept, action in request.concepts.items():
            rule.concepts[concept].CopyFrom(action)
        return rule

    def UpdateRule(self, request: Any, context: grpc.ServicerContext) -> pb.Rule:
        self._answer("UpdateRule", request, context)
        return pb.Rule(rule_id=request.rule_id, name=request.name)

    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> jpb.ListJobsResponse:
        self._answer("ListJobs", request, context)
        return jpb.ListJobsResponse(jobs=[self.script.job])

    def CreateJob(self, request: Any, context: grpc.ServicerContext) -> jpb.CreateJobResponse:
        self._answer("CreateJob", request, context)
        return jpb.CreateJobResponse(
            job_id="j1",
            status="created",
            upload_urls=[pb.UploadUrl(idx=0, key="inputs/u1/j1/0.jpg", url="http://x", method="PUT")],
            expires_at="2026-01-01T00:00:00Z",
        )

    def GetJob(self, request: Any, context: grpc.ServicerContext) -> pb.Job:
        self._answer("GetJob", request, context)
        return self.script.job

    def ExecuteJob(self, request: Any, context: grpc.ServicerContext) -> pb.Job:
        self._answer("ExecuteJob", request, context)
        return self.script.job

    def AnalyzeJob(self, request: Any, context: grpc.ServicerContext) -> pb.Job:
        self._answer("AnalyzeJob", request, context)
        return self.script.job

    def ConfirmUpload(self, request: Any, context: grpc.ServicerContext) -> pb.Job:
        self._answer("ConfirmUpload", request, context)
        return self.script.job

    def ReportItemResult(self, request: Any, context: grpc.ServicerContext) -> jpb.ReportItemResultResponse:
        self._answer("ReportItemResult", request, context)
        return jpb.ReportItemResultResponse(job_id=request.job_id, idx=request.idx, item_status="done")

    def WatchJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[jpb.JobEvent]:
        try:
            self._answer("WatchJob", request, context)
            for event in self.script.events:
                if not context.is_active():
                    return
                yield event
                time.sleep(self.script.event_gap_s)
            if self.script.fail_after_events is not None:
                code = self.script.fail_after_events.code
                context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, code),))
                context.abort(GRPC_STATUS[code], self.script.fail_after_events.message)
            # Like the real service: a non-terminal job is watched until the client goes away.
            while context.is_active() and not (self.script.events and self.script.events[-1].final):
                time.sleep(0.02)
        finally:
            self.script.watch_ended.set()


@contextmanager
def serve_fake(script: Script) -> Iterator[str]:
    """Serve the fake on 127.0.0.1:<free port>; yields the target ``host:port``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    # The RPCs the shim's tests never call stay unimplemented (UNIMPLEMENTED, like any servicer's).
    fake = FakeJobService(script)  # type: ignore[abstract]
    jobs_pb2_grpc.add_JobServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0.5).wait()
