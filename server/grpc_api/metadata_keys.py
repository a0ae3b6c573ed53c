"""Names of the call metadata the JobService reads or sends, shared with the REST shim that
forwards them."""

from __future__ import annotations

from protos.s3.v1 import jobs_pb2, options_pb2

AUTHORIZATION_KEY = "authorization"
"""Request metadata: ``Bearer <access token>``."""

CALLBACK_SECRET_KEY = "x-callback-secret"
"""Request metadata: the remote workers' shared secret (callbacks)."""

STREAM_TOKEN_KEY = "x-stream-token"
"""Request metadata of WatchJob: a job stream token (``CreateStreamToken``), for clients that cannot
send an authorization header; the REST shim takes it from ``?token=`` of the event stream."""

ADMIN_TOKEN_KEY = "x-admin-token"
"""Request metadata: the operator credential of the AdminService."""

WORKER_TOKEN_KEY = "x-worker-token"
"""Request metadata of the WorkerService: the worker token (``S3_WORKER_TOKEN``)."""

IDEMPOTENCY_KEY = "idempotency-key"
"""Request metadata: the client's idempotency key (the shim forwards ``Idempotency-Key``)."""

KEYED_RPCS = frozenset(
    method.name
    for method in jobs_pb2.DESCRIPTOR.services_by_name["JobService"].methods
    if method.GetOptions().Extensions[options_pb2.idempotency_key]
)
"""The JobService RPCs that take an idempotency key: those marked ``(idempotency_key)`` in jobs.proto."""

REPLAYED = "idempotent-replayed"
"""Initial metadata of an answer replayed for an idempotency key (value ``true``)."""
