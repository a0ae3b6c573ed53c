"""The one table from contract error codes to gRPC status codes.

The contract code also travels as trailing metadata (``s3-error-code``), because several codes share
a gRPC status (AUTH_REQUIRED and INVALID_TOKEN are both UNAUTHENTICATED); the REST shim reads it.
"""

from __future__ import annotations

from types import MappingProxyType

import grpc

from server.errors import ALL_CODES

ERROR_CODE_METADATA_KEY = "s3-error-code"
# Whole seconds after which a limit error is worth retrying; the REST shim answers it as Retry-After.
RETRY_AFTER_METADATA_KEY = "s3-retry-after-s"

GRPC_STATUS: MappingProxyType[str, grpc.StatusCode] = MappingProxyType(
    {
        "AUTH_REQUIRED": grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_TOKEN": grpc.StatusCode.UNAUTHENTICATED,
        "FORBIDDEN": grpc.StatusCode.PERMISSION_DENIED,
        "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
        "VALIDATION_ERROR": grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_STATE": grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_CREDITS": grpc.StatusCode.FAILED_PRECONDITION,
        "CONCURRENCY_LIMIT": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "STREAM_LIMIT": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RULE_SLOT_LIMIT": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "BATCH_LIMIT": grpc.StatusCode.INVALID_ARGUMENT,
        "PAYLOAD_TOO_LARGE": grpc.StatusCode.OUT_OF_RANGE,
        "QUOTA_EXCEEDED": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "INFERENCE_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
        "INTERNAL": grpc.StatusCode.INTERNAL,
        "IDEMPOTENCY_MISMATCH": grpc.StatusCode.INVALID_ARGUMENT,
    }
)

assert set(GRPC_STATUS) == set(ALL_CODES), "every contract code needs a gRPC status"
