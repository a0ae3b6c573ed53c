"""A sync gRPC client call as the tests read it, where grpc-stubs type it differently from grpcio."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc


def trailers(error: grpc.RpcError) -> dict[str, str | bytes]:
    """A failed call's trailing metadata, by key. The sync client raises an error that is also a
    ``grpc.Call``, whose trailing metadata is (key, value) pairs; the stubs type
    ``RpcError.trailing_metadata`` as objects with attributes instead."""
    return dict(cast("grpc.Call", error).trailing_metadata() or ())


def cancel(call: grpc.RpcContext) -> None:
    """Cancels a call from the client side (the stubs leave ``RpcContext.cancel`` unannotated)."""
    cast("Callable[[], bool]", call.cancel)()
