"""JSON Schemas of the REST bodies, derived from the message descriptors by the codec's rules.

The same rules and exceptions as ``gateway_rest.codec`` (listed in ``codec/shapes.py``): a schema is
written here only where the JSON is not the proto's. Descriptions are the .proto comments
(``comments``: element full name -> text, read by ``scripts/gen_protos.py`` from the sources).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway_rest.codec import shapes
from protos.s3.v1 import options_pb2, types_pb2
from server import contract

Schema = dict[str, Any]

_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


class Schemas:
    """Collects the component schemas of the messages reached from the operations."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self._comments = comments
        self.components: dict[str, Schema] = {}

    def _described(self, schema: Schema, full_name: str) -> Schema:
        text = self._comments.get(full_name)
        return {**schema, "description": text} if text else schema

    def _value(self, field: FieldDescriptor, *, request: bool) -> Schema:
        if field.message_type is not None:
            return self.message(field.message_type, request=request)
        schema = dict(_SCALARS[field.type])
        options = field.GetOptions()
        vocabulary = options.Extensions[options_pb2.values_of]
        if vocabulary:
            enum = contract.enum_of_values(vocabulary)
            schema["enum"] = list(contract.vocabulary(enum, lower=True))
        if options.HasExtension(options_pb2.minimum):
            schema["minimum"] = options.Extensions[options_pb2.minimum]
        if options.HasExtension(options_pb2.maximum):
            schema["maximum"] = options.Extensions[options_pb2.maximum]
        return schema

    def field(self, field: FieldDescriptor, *, request: bool) -> Schema:
        if shapes.is_map(field):
            _, value = shapes.map_entry(field)
            schema: Schema = {"type": "object", "additionalProperties": self._value(value, request=request)}
        elif shapes.is_repeated(field):
            schema = {"type": "array", "items": self._value(field, request=request)}
        else:
            schema = self._value(field, request=request)
            nullable = shapes.is_optional(field) or field.message_type is not None
            if nullable and not request:
                schema = _nullable(schema)
        return self._described(schema, field.full_name)

    def message(self, descriptor: Descriptor, *, request: bool, without: Iterable[str] = ()) -> Schema:
        """A ``$ref`` to the message's component (built on first use), or its inline shape."""
        name = descriptor.full_name
        if name == shapes.STRUCT:
            return {"type": "object"}
        if name == shapes.CONCEPT_ACTION:
            return self._component(
                descriptor,
                {
                    "type": "object",
                    "properties": {"action": {"type": "string"}},
                    "required": ["action"],
                    "description": "every key but action is a parameter of the action (value, strength, ...)",
                },
            )
        if name == shapes.ITEM_CHOICES:
            concepts = descriptor.fields_by_name["concepts"]
            return self.field(concepts, request=request)
        fields = [f for f in shapes.json_fields(descriptor) if f.name not in set(without)]
        properties = {f.name: self.field(f, request=request) for f in fields}
        if request:
            required = [f.name for f in fields if shapes.is_required(f)]
        else:
            required = list(properties)
            properties.update(self._response_extras(name))
            required += [k for k in properties if k not in required]
        schema: Schema = {"type": "object", "properties": properties, "required": required}
        schema["additionalProperties"] = False
        if name == shapes.JOB_LIST:
            properties["jobs"] = {"type": "array", "items": ref("JobSummary")}
        return self._component(descriptor, schema, request=request, body=bool(set(without)))

    def _response_extras(self, name: str) -> dict[str, Schema]:
        """The response keys ``codec.shapes`` adds to the message's own fields."""
        if name == shapes.JOB:
            events = types_pb2.Job.DESCRIPTOR.fields_by_name["webhook_events"]
            webhook = {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "events": {"type": "array", "items": self._value(events, request=False)},
                    "secret": {"type": "string", "description": "whsec_...: only in the answer to execute"},
                },
                "required": ["url", "events"],
                "additionalProperties": False,
            }
            return {"webhook": {"oneOf": [{"type": "null"}, webhook]}}
        if name == shapes.PRESET:
            template = self.message(types_pb2.Template.DESCRIPTOR, request=False)
            return {"templates": {"type": "array", "items": template, "description": "every template of its sets"}}
        if name == shapes.HEALTH:
            component = {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                "required": ["ok", "detail"],
                "additionalProperties": False,
            }
            return {"components": {"type": "object", "additionalProperties": component}}
        if name == shapes.STREAM_TOKEN:
            return {"events_url": {"type": "string", "description": "path of the event stream, token included"}}
        return {}

    def _component(
        self, descriptor: Descriptor, schema: Schema, *, request: bool = False, body: bool = False
    ) -> Schema:
        """Named after the message; a request's body without its path fields is ``<Name>Body``, a
        message nested in a request ``<Name>Input`` (its answer form differs: every key, nulls)."""
        key = descriptor.name
        if body:
            key += "Body"
        elif request and not key.endswith("Request") and descriptor.full_name != shapes.CONCEPT_ACTION:
            key += "Input"
        if key not in self.components:
            self.components[key] = self._described(schema, descriptor.full_name)
        return ref(key)


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"oneOf": [{"type": "null"}, schema]}
    kind = schema["type"]
    out = {**schema, "type": [kind, "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def job_summary(schemas: Schemas) -> Schema:
    """A job in a listing: the Job without ``items``."""
    schemas.message(types_pb2.Job.DESCRIPTOR, request=False)
    job = schemas.components["Job"]
    summary = {**job, "properties": dict(job["properties"]), "required": [k for k in job["required"] if k != "items"]}
    del summary["properties"]["items"]
    schemas.components["JobSummary"] = summary
    return ref("JobSummary")
