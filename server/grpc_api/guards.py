"""Checks that run on a call's metadata before its request message is decoded.

gRPC receives a whole message before any handler runs, but decoding it is the expensive part (a
6 MB ``ReportItemResult`` is a few hundred thousand Python objects). So the interceptor asks this
module first: a call with missing or wrong credentials, or a message over its method's size cap, is
refused without decoding. The handlers still authenticate as before (they need the user id); this
is the cheap early refusal, not a second source of truth about who may call what.

Methods this table does not name get the default size cap and are authenticated by their handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from protos.s3.v1 import admin_pb2, jobs_pb2, worker_pb2
from server.config.sections import GatewayConfig
from server.errors import S3Error
from server.grpc_api.metadata_keys import (
    ADMIN_TOKEN_KEY,
    AUTHORIZATION_KEY,
    CALLBACK_SECRET_KEY,
    STREAM_TOKEN_KEY,
    WORKER_TOKEN_KEY,
)
from server.service.bundle import Services

Credential = Literal["user", "watcher", "callback", "admin", "worker", "none"]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""The largest message the gRPC server receives at all (a callback of a big album item)."""
DEFAULT_MAX_REQUEST_BYTES = GatewayConfig.max_body_bytes
"""Every other request: the REST shim's body cap, and far above any real request of the contract."""

_JOBS = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
_ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
_WORKER = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]

# JobService methods a client calls with its bearer token.
_USER_METHODS = (
    "GetMe",
    "ListPresets",
    "GetPreset",
    "CreateRule",
    "ListRules",
    "UpdateRule",
    "DeleteRule",
    "ListJobs",
    "CreateJob",
    "ConfirmUpload",
    "AnalyzeJob",
    "ExecuteJob",
    "GetJob",
    "CancelJob",
    "CreateStreamToken",
    "ListWebhookDeliveries",
)


@dataclass(frozen=True)
class MethodRule:
    credential: Credential
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def _path(service_full_name: str, method: str) -> str:
    return f"/{service_full_name}/{method}"


METHOD_RULES: Mapping[str, MethodRule] = MappingProxyType(
    {
        **{_path(_JOBS.full_name, m): MethodRule("user") for m in _USER_METHODS},
        # A bearer token, or a job stream token (its job is checked once the request is decoded).
        _path(_JOBS.full_name, "WatchJob"): MethodRule("watcher"),
        _path(_JOBS.full_name, "ReportItemResult"): MethodRule("callback", MAX_MESSAGE_BYTES),
        # The whole AdminService is for operators only.
        **{_path(_ADMIN.full_name, m.name): MethodRule("admin") for m in _ADMIN.methods},
        # The whole WorkerService is for workers holding the worker token; a result may be as big
        # as a callback's.
        **{_path(_WORKER.full_name, m.name): MethodRule("worker", MAX_MESSAGE_BYTES) for m in _WORKER.methods},
    }
)
DEFAULT_RULE = MethodRule("none")


def _first(metadata: Iterable[tuple[str, str | bytes]], key: str) -> str | None:
    for k, v in metadata:
        if k == key and isinstance(v, str):
            return v
    return None


class RequestGuard:
    """Answers, from metadata alone, whether a call may have its message decoded."""

    def __init__(self, services: Services) -> None:
        checks: dict[Credential, Callable[[Iterable[tuple[str, str | bytes]]], object]] = {
            "user": lambda md: services.tokens.user_from_authorization(_first(md, AUTHORIZATION_KEY)),
            # The stream's job is in the message, not decoded yet: its token is checked for any job here.
            "watcher": lambda md: services.tokens.bearer_or_stream(
                _first(md, AUTHORIZATION_KEY), _first(md, STREAM_TOKEN_KEY), None
            ),
            "callback": lambda md: services.callbacks.authenticate(_first(md, CALLBACK_SECRET_KEY)),
            "admin": lambda md: services.admin.authorize(_first(md, ADMIN_TOKEN_KEY)),
            "worker": lambda md: services.worker_auth.authenticate(_first(md, WORKER_TOKEN_KEY)),
        }
        self._checks = checks

    @staticmethod
    def rule(method: str) -> MethodRule:
        return METHOD_RULES.get(method, DEFAULT_RULE)

    def refusal(self, rule: MethodRule, metadata: Iterable[tuple[str, str | bytes]]) -> S3Error | None:
        """The error to answer without decoding, or None when the call may go on."""
        check = self._checks.get(rule.credential)
        if check is None:
            return None
        try:
            check(metadata)
        except S3Error as e:
            return e
        return None
