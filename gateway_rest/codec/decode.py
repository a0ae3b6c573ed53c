"""The contract's JSON to request messages (rules and exceptions in ``gateway_rest.codec.shapes``).

Decoding checks JSON types only as far as building the message needs (a wrong type is a
VALIDATION_ERROR naming the field); what the values mean is the server's to judge. Unknown fields are
rejected, naming the field, so a misspelt key never silently does nothing. A ``null`` counts as
absent, except for an ``optional`` field (present means "set it") and a required one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.struct_pb2 import Struct

from gateway_rest.codec import shapes
from gateway_rest.errors import ApiError, validation_error

M = TypeVar("M", bound=Message)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_INDEX_KEY = re.compile(r"0|[1-9][0-9]{0,9}")
_INT32_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_NUMBER_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _integer(value: Any, name: str, *, largest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation_error(f"{name} must be an integer")
    if not -largest - 1 <= value <= largest:
        raise validation_error(f"{name} is out of range")
    return value


def _int32(value: Any, name: str) -> int:
    # Whole floats are accepted: Dart encodes a double 2.0 as "2.0". (int64 fields, areas in pixels,
    # come from workers, not from the app: exact integers only.)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _integer(value, name, largest=INT32_MAX)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise validation_error(f"{name} must be a number")
    return float(value)


def _scalar(field: FieldDescriptor, value: Any, name: str) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise validation_error(f"{name} must be a string")
        return value
    if field.type in _INT32_TYPES:
        return _int32(value, name)
    if field.type in _INT64_TYPES:
        return _integer(value, name, largest=INT64_MAX)
    if field.type in _NUMBER_TYPES:
        return _number(value, name)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise validation_error(f"{name} must be a boolean")
        return value
    raise TypeError(f"no JSON decoding for {field.full_name}")


_LIST_OF = {FieldDescriptor.TYPE_STRING: "strings", FieldDescriptor.TYPE_DOUBLE: "numbers"}


def _repeated(message: Message, field: FieldDescriptor, value: Any, name: str) -> None:
    target = getattr(message, field.name)
    if field.message_type is not None:
        if not isinstance(value, list):
            raise validation_error(f"{name} must be a list")
        for i, v in enumerate(value):
            target.add().CopyFrom(_message(GetMessageClass(field.message_type), v, f"{name}[{i}]"))
        return
    if field.type in _INT32_TYPES:
        if not isinstance(value, list):
            raise validation_error(f"{name} must be a list of integers")
        target.extend(_int32(v, f"{name}[{i}]") for i, v in enumerate(value))
        return
    kind = _LIST_OF.get(field.type, "values")
    if not isinstance(value, list):
        raise validation_error(f"{name} must be a list of {kind}")
    try:
        target.extend(_scalar(field, v, name) for v in value)
    except ApiError as e:
        raise validation_error(f"{name} must be a list of {kind}") from e


def _concept_action(value: Any, name: str) -> Message:
    """``{"action": "recolor", "value": "white"}``: every key but ``action`` is a parameter."""
    from protos.s3.v1 import types_pb2 as pb

    if not isinstance(value, dict):
        raise validation_error(f'{name} must be an object like {{"action": "recolor", "value": "white"}}')
    action = value.get("action")
    if not isinstance(action, str):
        raise validation_error(f"{name}.action must be a string")
    params = Struct()
    params.update({k: v for k, v in value.items() if k != "action"})
    return pb.ConceptAction(action=action, params=params)


_MAP_OF = {
    shapes.CONCEPT_ACTION: "an object mapping each concept to its action",
    shapes.ITEM_CHOICES: "an object keyed by item index",
}


def _map(message: Message, field: FieldDescriptor, value: Any, name: str) -> None:
    key_field, value_field = shapes.map_entry(field)
    value_type = value_field.message_type
    if not isinstance(value, dict):
        what = _MAP_OF.get(value_type.full_name, "an object") if value_type is not None else "an object"
        raise validation_error(f"{name} must be {what}")
    target = getattr(message, field.name)
    for raw_key, entry in value.items():
        key: Any = raw_key
        if key_field.type in _INT32_TYPES:
            # JSON keys are strings: item indices are written "0", "1", ...
            if not _INDEX_KEY.fullmatch(raw_key) or int(raw_key) > INT32_MAX:
                raise validation_error(f"{name} key {raw_key!r} must be an item index (0, 1, ...)")
            key = int(raw_key)
        where = f"{name}.{raw_key}"
        if value_type is None:
            target[key] = _scalar(value_field, entry, where)
        else:
            target[key].CopyFrom(_message(GetMessageClass(value_type), entry, where))


def _item_choices(value: Any, where: str) -> Message:
    """``{"Wall": {"exclude": [2], "lock": [1]}}``: the message's ``concepts`` map itself."""
    from protos.s3.v1 import types_pb2 as pb

    if not isinstance(value, dict):
        raise validation_error(f"{where} must be an object keyed by concept")
    choices = pb.ItemChoices()
    _map(choices, choices.DESCRIPTOR.fields_by_name["concepts"], value, where)
    return choices


def _struct(value: Any, name: str) -> Struct:
    if not isinstance(value, dict):
        raise validation_error(f"{name} must be an object")
    s = Struct()
    s.update(value)
    return s


_SHAPES = {shapes.CONCEPT_ACTION: _concept_action, shapes.ITEM_CHOICES: _item_choices, shapes.STRUCT: _struct}


def _set(message: Message, field: FieldDescriptor, value: Any, name: str) -> None:
    if shapes.is_map(field):
        _map(message, field, value, name)
    elif shapes.is_repeated(field):
        _repeated(message, field, value, name)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(_message(GetMessageClass(field.message_type), value, name))
    else:
        setattr(message, field.name, _scalar(field, value, name))


def _message(cls: type[M], value: Any, where: str, *, path: Mapping[str, str] | None = None) -> M:
    shape = _SHAPES.get(cls.DESCRIPTOR.full_name)
    if shape is not None:
        shaped: M = shape(value, where)  # type: ignore[assignment]
        return shaped
    descriptor = cls.DESCRIPTOR
    path = path or {}
    fields = {f.name: f for f in shapes.json_fields(descriptor) if f.name not in path}
    optional_body = descriptor.full_name not in shapes.BODY_REQUIRED
    if value is None and where == "" and optional_body and not any(shapes.is_required(f) for f in fields.values()):
        value = {}  # an empty body counts as {} where nothing is required
    if not isinstance(value, dict):
        raise validation_error(f"{where or 'the request body'} must be a JSON object")
    repeats_path = descriptor.full_name == shapes.ITEM_RESULT
    for key in value:
        if key not in fields and not (repeats_path and key in path):
            raise validation_error(f"unknown field {_name(where, key)!r}")
    message = cls(**path)
    for key, raw in value.items():
        if key in path:
            if raw != path[key]:
                raise validation_error(f"{key} in the body does not match the job in the path")
            continue
        field = fields[key]
        replace = shapes.REPLACED_BY_PRESENCE.get(key) if descriptor.full_name == shapes.UPDATE_RULE else None
        if raw is None and not (shapes.is_optional(field) or shapes.is_required(field) or replace):
            continue
        _set(message, field, raw, _name(where, key))
        if replace is not None:
            setattr(message, replace, True)
    for name, field in fields.items():
        if shapes.is_required(field) and name not in value:
            raise validation_error(f"{_name(where, name)} is required")
    return message


def decode(cls: type[M], body: Any, *, path: Mapping[str, str] | None = None) -> M:
    """A request message from its JSON body and the path parameters bound to its fields."""
    return _message(cls, body, "", path=path)


def decode_query(cls: type[M], query: Mapping[str, str], *, path: Mapping[str, str] | None = None) -> M:
    """A request message of a GET route from its query string; unknown parameters are ignored."""
    message = cls(**(path or {}))
    for field in cls.DESCRIPTOR.fields:
        raw = query.get(field.name)
        if raw is None or (path and field.name in path):
            continue
        if field.type in _INT32_TYPES:
            # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
            # length bound keeps int() from spending time on (or refusing) thousands of digits.
            if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(INT32_MAX))):
                raise validation_error(f"{field.name} must be a positive integer")
            setattr(message, field.name, _int32(int(raw), field.name))
        else:
            setattr(message, field.name, raw)
    return message
