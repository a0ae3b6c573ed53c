"""The domain's one error hierarchy.

Every error a client can see carries a contract code (``ErrorCode`` in ``protos/s3/v1/types.proto``, ``docs/contract.md``). Each transport edge
translates these once: the gRPC servicer through ``server.grpc_api.status``, the REST shim through
``gateway_rest.errors``. Adapters wrap third-party exceptions into these classes with ``raise ... from e``.
"""

from __future__ import annotations

from typing import ClassVar

from server.contract import ERROR_CODES


class S3Error(Exception):
    """Base of every error with a contract code."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The request field the error is about, when there is one (``concepts.Wall.value``).
        self.field = field
        # For a limit that frees up with time: when trying again makes sense (HTTP ``Retry-After``).
        self.retry_after_s = retry_after_s


class AuthRequired(S3Error):
    code = "AUTH_REQUIRED"


class InvalidToken(S3Error):
    code = "INVALID_TOKEN"


class Forbidden(S3Error):
    code = "FORBIDDEN"


class NotFound(S3Error):
    """Also raised for another user's resource: existence is never revealed."""

    code = "NOT_FOUND"


class ValidationFailed(S3Error):
    code = "VALIDATION_ERROR"


class InvalidState(S3Error):
    code = "INVALID_STATE"


class InsufficientCredits(S3Error):
    code = "INSUFFICIENT_CREDITS"


class ConcurrencyLimit(S3Error):
    code = "CONCURRENCY_LIMIT"


class StreamLimit(S3Error):
    """The user already has as many open job-event streams as a JobService process allows."""

    code = "STREAM_LIMIT"


class RuleSlotLimit(S3Error):
    code = "RULE_SLOT_LIMIT"


class BatchLimit(S3Error):
    code = "BATCH_LIMIT"


class QuotaExceeded(S3Error):
    """Stored bytes or live jobs over the plan's quota (``server.plans``); frees up as jobs are purged."""

    code = "QUOTA_EXCEEDED"


class PayloadTooLarge(S3Error):
    code = "PAYLOAD_TOO_LARGE"


class InferenceUnavailable(S3Error):
    code = "INFERENCE_UNAVAILABLE"


class StorageUnavailable(S3Error):
    """The object store did not answer; transient, so callers may retry."""

    code = "INTERNAL"


class Internal(S3Error):
    code = "INTERNAL"


class IdempotencyMismatch(S3Error):
    """An ``Idempotency-Key`` sent again with another request than the one it first came with."""

    code = "IDEMPOTENCY_MISMATCH"


ALL_CODES: tuple[str, ...] = ERROR_CODES
"""Every contract code, in the order ``protos/s3/v1/types.proto`` declares them."""
