"""A service view to a protobuf message by the message's own fields: each field takes the view's
attribute of the same name, so a shape is written once, in the .proto, and the conversions below
are only the places where a view and its message differ (``given``).

Values: ``None`` leaves the field unset (empty, or absent for ``optional``); a ``datetime`` becomes
RFC 3339 text; a mapping into a ``Struct`` field becomes a Struct; into any other message field, or
a sequence into a repeated message field, each dataclass is converted the same way. A field neither
``given`` nor an attribute of the view is an error, so a new proto field cannot be left unset
silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import message_factory
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

from server.clock import rfc3339

M = TypeVar("M", bound=Message)


def struct(value: Mapping[str, Any]) -> Struct:
    s = Struct()
    s.update(dict(value))
    return s


def message_from(message_type: type[M], view: object, **given: Any) -> M:
    """``message_type`` built from ``view``'s attributes, ``given`` values first."""
    values: dict[str, Any] = {}
    for field in message_type.DESCRIPTOR.fields:
        if field.name in given:
            value = given[field.name]
        elif hasattr(view, field.name):
            value = getattr(view, field.name)
        else:
            raise AttributeError(f"{message_type.__name__}.{field.name}: not given and not on {type(view).__name__}")
        if value is not None:
            values[field.name] = _value(field, value)
    unknown = set(given) - {f.name for f in message_type.DESCRIPTOR.fields}
    if unknown:
        raise AttributeError(f"{message_type.__name__} has no field {', '.join(sorted(unknown))}")
    return message_type(**values)


def _value(field: Any, value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    message = field.message_type
    if message is None:
        return list(value) if _repeated(field) and not isinstance(value, str) else value
    if message.full_name == Struct.DESCRIPTOR.full_name and isinstance(value, Mapping):
        return struct(value)
    if message.GetOptions().map_entry or isinstance(value, Message):
        return value
    if _repeated(field) and isinstance(value, Sequence):
        return [_message(message, v) for v in value]
    return _message(message, value)


def _message(descriptor: Any, value: Any) -> Any:
    if isinstance(value, Message) or not dataclasses.is_dataclass(value):
        return value
    return message_from(message_factory.GetMessageClass(descriptor), value)


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated)
