"""Contract error codes to gRPC status codes, as the ``(grpc_status)`` options in the proto say.

The contract code also travels as trailing metadata (``s3-error-code``), because several codes share
a gRPC status (AUTH_REQUIRED and INVALID_TOKEN are both UNAUTHENTICATED); the REST shim reads it.
"""

from __future__ import annotations

from types import MappingProxyType

import grpc

from server.contract import RPC_CODE

ERROR_CODE_METADATA_KEY = "s3-error-code"
# Whole seconds after which a limit error is worth retrying; the REST shim answers it as Retry-After.
RETRY_AFTER_METADATA_KEY = "s3-retry-after-s"

_STATUS_OF_NUMBER = {status.value[0]: status for status in grpc.StatusCode}

GRPC_STATUS: MappingProxyType[str, grpc.StatusCode] = MappingProxyType(
    {code: _STATUS_OF_NUMBER[number] for code, number in RPC_CODE.items()}
)
