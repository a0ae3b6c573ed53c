"""The descriptor facts both directions share, and the documented places where the JSON differs.

The rules (``encode`` / ``decode``): a field's JSON key is its proto name; a proto3 ``optional``
field is ``null`` when unset or empty (no output yet, no set, no error); a singular message field is
``null`` when unset; ``google.protobuf.Struct`` is a free JSON object; a field marked
``(google.api.field_behavior) = REQUIRED`` must be in the request body.

The exceptions, each written only here:

- ``ConceptAction`` is flattened: ``{"action": "recolor", "value": "white"}``, every key but
  ``action`` a parameter.
- ``ItemChoices`` is its ``concepts`` map itself: ``{"Wall": {"exclude": [2]}}``.
- ``Job``'s ``webhook_url``, ``webhook_events`` and ``webhook_secret`` are one ``webhook`` object
  (``{url, events, secret?}``), ``null`` without a webhook; listings (``ListJobsResponse``) leave
  each job's ``items`` out.
- ``JobItem.analysis`` is ``"none"`` when the service left it empty.
- ``Preset`` also lists ``templates``: every template some output set uses, once.
- ``GetHealthResponse.components`` is keyed by component name: ``{"database": {ok, detail}}``.
- ``StreamToken`` also carries ``events_url``, the path of the stream it opens (the route adds it:
  the job id is not in the message).
- ``UpdateRuleRequest``: sending ``concepts`` or ``protect`` replaces the whole value (the
  ``replace_*`` flags are set from the key's presence, never sent).
- ``UpdateRuleRequest`` also needs a body (``{}`` changes nothing, nothing is refused).
- ``ReportItemResultRequest`` may repeat the path's ``job_id`` in its body (it must match).
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

CONCEPT_ACTION = "s3.v1.ConceptAction"
ITEM_CHOICES = "s3.v1.ItemChoices"
STRUCT = "google.protobuf.Struct"
JOB = "s3.v1.Job"
JOB_ITEM = "s3.v1.JobItem"
PRESET = "s3.v1.Preset"
HEALTH = "s3.v1.GetHealthResponse"
UPDATE_RULE = "s3.v1.UpdateRuleRequest"
JOB_LIST = "s3.v1.ListJobsResponse"
STREAM_TOKEN = "s3.v1.StreamToken"
ITEM_RESULT = "s3.v1.ReportItemResultRequest"

WEBHOOK_FIELDS = ("webhook_url", "webhook_events", "webhook_secret")
REPLACED_BY_PRESENCE = {"concepts": "replace_concepts", "protect": "replace_protect"}
"""UpdateRuleRequest: body key -> the flag its presence sets."""

HIDDEN: dict[str, frozenset[str]] = {
    JOB: frozenset(WEBHOOK_FIELDS),
    UPDATE_RULE: frozenset(REPLACED_BY_PRESENCE.values()),
}
"""Fields that never appear under their own name in the JSON."""

NO_ANALYSIS = "none"

BODY_REQUIRED = frozenset({UPDATE_RULE})
"""Requests whose empty body is refused although no field is required (an update says what changes)."""


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def map_entry(field: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """``(key, value)`` fields of a map field's entry message."""
    entry = field.message_type
    if entry is None:
        raise TypeError(f"{field.full_name} is not a map")
    return entry.fields_by_name["key"], entry.fields_by_name["value"]


def is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated and not is_map(field)


def is_optional(field: FieldDescriptor) -> bool:
    """A proto3 ``optional`` scalar: its own synthetic oneof."""
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"


def is_required(field: FieldDescriptor) -> bool:
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


def json_fields(message: Descriptor | Any) -> list[FieldDescriptor]:
    """``message``: a Descriptor (the upb one has no stub type of its own)."""
    hidden = HIDDEN.get(message.full_name, frozenset())
    return [f for f in message.fields if f.name not in hidden]
