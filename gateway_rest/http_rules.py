"""The REST routes of the JobService, as its ``google.api.http`` annotations state them."""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.message import Message

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import options_pb2
from server.grpc_api.metadata_keys import KEYED_RPCS


@dataclass(frozen=True)
class HttpRule:
    rpc: str
    method: str
    """GET, POST, PUT, DELETE."""
    path: str
    """With ``{field}`` for each path parameter, named after the request field it fills."""
    has_body: bool
    success_status: int
    """``(http_success_status)``, else 200."""
    idempotency_key: bool
    """``(idempotency_key)``: the route takes an ``Idempotency-Key`` header and may answer a replay."""
    request_type: type[Message]
    """The RPC's request message, which the route decodes from its body or query and path."""


def job_service_rules() -> list[HttpRule]:
    """One per RPC of the JobService, in declaration order; an RPC without a route is an error."""
    rules = []
    for method in jpb.DESCRIPTOR.services_by_name["JobService"].methods:
        options = method.GetOptions()
        http = options.Extensions[annotations_pb2.http]
        verb = http.WhichOneof("pattern")
        if verb is None or verb == "custom":
            raise ValueError(f"JobService.{method.name} needs a google.api.http get/post/put/delete route")
        status = options.Extensions[options_pb2.http_success_status] or 200
        request_type = message_factory.GetMessageClass(method.input_type)
        rules.append(
            HttpRule(
                method.name,
                verb.upper(),
                getattr(http, verb),
                bool(http.body),
                status,
                method.name in KEYED_RPCS,
                request_type,
            )
        )
    return rules


RULES: dict[str, HttpRule] = {rule.rpc: rule for rule in job_service_rules()}
"""RPC name -> its route."""
