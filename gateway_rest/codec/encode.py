"""Messages to the contract's JSON (rules and exceptions in ``gateway_rest.codec.shapes``).

Numbers that ``google.protobuf.Struct`` stored as doubles come back as integers when whole, because
typed clients (Dart) tell ``5`` from ``5.0``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

from gateway_rest.codec import shapes

JsonObject = dict[str, Any]


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def struct_json(value: Struct) -> JsonObject:
    out: JsonObject = _whole_numbers(json_format.MessageToDict(value))
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return encode(value)
    return value


def _field(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if shapes.is_map(field):
        _, value_field = shapes.map_entry(field)
        return {key: _value(value_field, value[key]) for key in sorted(value)}
    if shapes.is_repeated(field):
        return [_value(field, v) for v in value]
    if field.message_type is not None and not message.HasField(field.name):
        return None
    if shapes.is_optional(field) and (not message.HasField(field.name) or not value):
        return None
    return _value(field, value)


def _fields(message: Message) -> JsonObject:
    return {f.name: _field(message, f) for f in shapes.json_fields(message.DESCRIPTOR)}


def _concept_action(message: Any) -> JsonObject:
    params = struct_json(message.params)
    params.pop("action", None)
    return {"action": message.action, **params}


def _job(message: Any) -> JsonObject:
    out = _fields(message)
    out["webhook"] = None
    if message.webhook_url:
        webhook: JsonObject = {"url": message.webhook_url, "events": list(message.webhook_events)}
        if message.webhook_secret:  # the execute answer only
            webhook["secret"] = message.webhook_secret
        out["webhook"] = webhook
    return out


def _job_item(message: Any) -> JsonObject:
    out = _fields(message)
    out["analysis"] = message.analysis or shapes.NO_ANALYSIS
    return out


def _preset(message: Any) -> JsonObject:
    out = _fields(message)
    templates: dict[str, JsonObject] = {}
    for output_set in message.output_sets:
        for template in output_set.templates:
            templates.setdefault(template.id, encode(template))
    out["templates"] = list(templates.values())
    return out


def _health(message: Any) -> JsonObject:
    out = _fields(message)
    out["components"] = {c.name: {"ok": c.ok, "detail": c.detail} for c in message.components}
    return out


def _job_list(message: Any) -> JsonObject:
    return {**_fields(message), "jobs": [job_summary(j) for j in message.jobs]}


_SHAPES = {
    shapes.STRUCT: struct_json,
    shapes.CONCEPT_ACTION: _concept_action,
    shapes.ITEM_CHOICES: lambda m: _fields(m)["concepts"],
    shapes.JOB: _job,
    shapes.JOB_ITEM: _job_item,
    shapes.PRESET: _preset,
    shapes.HEALTH: _health,
    shapes.JOB_LIST: _job_list,
}


def encode(message: Message) -> Any:
    """The JSON value of ``message``: an object, except for the flattened shapes."""
    shape = _SHAPES.get(message.DESCRIPTOR.full_name, _fields)
    return shape(message)


def job_summary(message: Message) -> JsonObject:
    """A job in a listing: without ``items`` (the service sends none there)."""
    out: JsonObject = encode(message)
    out.pop("items", None)
    return out
