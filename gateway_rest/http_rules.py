"""The REST routes of the JobService, as its ``google.api.http`` annotations state them."""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import options_pb2


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
        rules.append(HttpRule(method.name, verb.upper(), getattr(http, verb), bool(http.body), status))
    return rules


RULES: dict[str, HttpRule] = {rule.rpc: rule for rule in job_service_rules()}
"""RPC name -> its route."""
