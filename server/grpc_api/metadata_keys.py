"""Names of the call metadata the JobService reads or sends, shared with the REST shim that
forwards them."""

from __future__ import annotations

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

REPLAYED = "idempotent-replayed"
"""Initial metadata of an answer replayed for an idempotency key (value ``true``)."""
