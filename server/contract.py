"""The contract's vocabularies, read from the proto descriptors (``protos/s3/v1/types.proto``).

The .proto files state each error code with its HTTP and gRPC statuses (custom options in
``options.proto``) and each state vocabulary once; this module turns them into the Python tables
every other module uses, so no code, state or status pair is written twice.

A value's wire name is its proto name without the enum's prefix (``ERROR_CODE_NOT_FOUND`` is
``NOT_FOUND``); states are lower case on the wire (``JOB_STATUS_DONE`` is ``done``), and a value
whose wire name is neither says it with the ``(wire_name)`` option (``item.done``). Value 0 is
proto3's required default and not part of any vocabulary.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from google.protobuf.descriptor import EnumDescriptor, EnumValueDescriptor

from protos.s3.v1 import options_pb2, types_pb2


def _prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def wire_name(value: EnumValueDescriptor, *, lower: bool) -> str:
    options = value.GetOptions()
    if options.HasExtension(options_pb2.wire_name):
        return options.Extensions[options_pb2.wire_name]
    name = value.name.removeprefix(_prefix(value.type))
    return name.lower() if lower else name


def vocabulary(enum: EnumDescriptor, *, lower: bool) -> tuple[str, ...]:
    """The enum's wire names in declaration order, without the zero value."""
    return tuple(wire_name(v, lower=lower) for v in enum.values if v.number != 0)


def _status_options(enum: EnumDescriptor) -> tuple[dict[str, int], dict[str, int]]:
    """``(http, grpc)``: each code's HTTP status and google.rpc.Code number, both required."""
    http: dict[str, int] = {}
    rpc: dict[str, int] = {}
    for value in enum.values:
        if value.number == 0:
            continue
        options = value.GetOptions()
        name = wire_name(value, lower=False)
        if not options.HasExtension(options_pb2.http_status) or not options.HasExtension(options_pb2.grpc_status):
            raise ValueError(f"{enum.full_name}.{value.name} needs both (http_status) and (grpc_status) options")
        http[name] = options.Extensions[options_pb2.http_status]
        rpc[name] = options.Extensions[options_pb2.grpc_status]
    return http, rpc


def enum_of_values(full_name: str) -> EnumDescriptor:
    """The enum a ``(values_of)`` field option names."""
    return types_pb2.DESCRIPTOR.pool.FindEnumTypeByName(full_name)


ERROR_CODES: tuple[str, ...] = vocabulary(types_pb2.ErrorCode.DESCRIPTOR, lower=False)
_HTTP, _RPC = _status_options(types_pb2.ErrorCode.DESCRIPTOR)
HTTP_STATUS: MappingProxyType[str, int] = MappingProxyType(_HTTP)
"""Contract code -> the HTTP status the REST shim answers it with."""
RPC_CODE: MappingProxyType[str, int] = MappingProxyType(_RPC)
"""Contract code -> the google.rpc.Code number (grpc.StatusCode) the JobService aborts with."""

JOB_STATUSES: tuple[str, ...] = vocabulary(types_pb2.JobStatus.DESCRIPTOR, lower=True)
ITEM_STATUSES: tuple[str, ...] = vocabulary(types_pb2.ItemStatus.DESCRIPTOR, lower=True)
ANALYSIS_STATES: tuple[str, ...] = vocabulary(types_pb2.AnalysisState.DESCRIPTOR, lower=True)
PLANS: tuple[str, ...] = vocabulary(types_pb2.Plan.DESCRIPTOR, lower=True)
WEBHOOK_EVENTS: tuple[str, ...] = vocabulary(types_pb2.WebhookEvent.DESCRIPTOR, lower=True)
TEMPLATE_FITS: tuple[str, ...] = vocabulary(types_pb2.TemplateFit.DESCRIPTOR, lower=True)
TEMPLATE_FORMATS: tuple[str, ...] = vocabulary(types_pb2.TemplateFormat.DESCRIPTOR, lower=True)
WEBHOOK_DELIVERY_STATES: tuple[str, ...] = vocabulary(types_pb2.WebhookDeliveryState.DESCRIPTOR, lower=True)
CONTENT_TYPES: tuple[str, ...] = vocabulary(types_pb2.ContentType.DESCRIPTOR, lower=True)
