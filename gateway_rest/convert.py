"""JSON of the REST contract to JobService messages and back. The only place the two shapes meet.

Decoding checks JSON types only as far as building the message needs (a wrong type is a
VALIDATION_ERROR naming the field); what the values mean is the server's to judge. Unknown fields in a
request body are rejected, naming the field, so a misspelt key never silently does nothing.

Encoding turns proto3's empty strings into ``null`` where the contract means "absent" (no output yet,
no set, no error), and numbers that ``google.protobuf.Struct`` stored as doubles back into integers
when they are whole, because typed clients (Dart) tell ``5`` from ``5.0``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from gateway_rest.errors import validation_error
from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb

INT32_MAX = 2**31 - 1
_INDEX_KEY = re.compile(r"0|[1-9][0-9]{0,9}")

JsonObject = dict[str, Any]


# ---------------------------------------------------------------------------------------- decoding


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Fields:
    """A JSON object being decoded; ``where`` is its dotted path in the body ("" at the top)."""

    def __init__(self, value: Any, where: str, allowed: Collection[str]) -> None:
        if not isinstance(value, dict):
            raise validation_error(f"{where or 'the request body'} must be a JSON object")
        for key in value:
            if key not in allowed:
                raise validation_error(f"unknown field {_name(where, key)!r}")
        self._value: dict[str, Any] = value
        self._where = where

    def has(self, key: str) -> bool:
        return key in self._value

    def raw(self, key: str) -> Any:
        return self._value.get(key)

    def name(self, key: str) -> str:
        return _name(self._where, key)

    def required(self, key: str) -> Any:
        if key not in self._value:
            raise validation_error(f"{self.name(key)} is required")
        return self._value[key]

    def text(self, key: str, *, required: bool = False) -> str:
        value = self.required(key) if required else self._value.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise validation_error(f"{self.name(key)} must be a string")
        return value

    def integer(self, key: str, *, required: bool = False) -> int:
        value = self.required(key) if required else self._value.get(key)
        if value is None and not required:
            return 0
        return _int32(value, self.name(key))

    def number(self, key: str) -> float:
        value = self._value.get(key)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise validation_error(f"{self.name(key)} must be a number")
        return float(value)

    def texts(self, key: str) -> list[str]:
        value = self._value.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise validation_error(f"{self.name(key)} must be a list of strings")
        return list(value)

    def integers(self, key: str) -> list[int]:
        value = self._value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise validation_error(f"{self.name(key)} must be a list of integers")
        return [_int32(v, f"{self.name(key)}[{i}]") for i, v in enumerate(value)]


def _int32(value: Any, name: str) -> int:
    # Whole floats are accepted: Dart encodes a double 2.0 as "2.0".
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation_error(f"{name} must be an integer")
    if not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise validation_error(f"{name} is out of range")
    return value


def _struct(value: Mapping[str, Any]) -> Struct:
    s = Struct()
    s.update(dict(value))
    return s


def _concept_actions(value: Any, where: str) -> dict[str, pb.ConceptAction]:
    """``{"Wall": {"action": "recolor", "value": "white"}}``: every key but ``action`` is a parameter."""
    if not isinstance(value, dict):
        raise validation_error(f"{where} must be an object mapping each concept to its action")
    out: dict[str, pb.ConceptAction] = {}
    for concept, entry in value.items():
        name = f"{where}.{concept}"
        if not isinstance(entry, dict):
            raise validation_error(f'{name} must be an object like {{"action": "recolor", "value": "white"}}')
        action = entry.get("action")
        if not isinstance(action, str):
            raise validation_error(f"{name}.action must be a string")
        out[concept] = pb.ConceptAction(
            action=action, params=_struct({k: v for k, v in entry.items() if k != "action"})
        )
    return out


def _object(body: Any, allowed: Collection[str]) -> _Fields:
    """A top-level body; an empty body counts as ``{}``."""
    return _Fields({} if body is None else body, "", allowed)


def no_fields(body: Any) -> None:
    """For endpoints that take no body: nothing, ``{}``, or an error naming the first field."""
    _object(body, ())


def anon_user_request(body: Any) -> jpb.CreateAnonUserRequest:
    f = _object(body, ("device_hash",))
    return jpb.CreateAnonUserRequest(device_hash=f.text("device_hash"))


def refresh_request(body: Any) -> jpb.RefreshSessionRequest:
    f = _Fields(body, "", ("refresh_token",))
    return jpb.RefreshSessionRequest(refresh_token=f.text("refresh_token", required=True))


def create_rule_request(body: Any) -> jpb.CreateRuleRequest:
    f = _Fields(body, "", ("name", "preset_id", "concepts", "protect"))
    message = jpb.CreateRuleRequest(
        name=f.text("name", required=True),
        preset_id=f.text("preset_id", required=True),
        protect=f.texts("protect"),
    )
    for concept, action in _concept_actions(f.required("concepts"), "concepts").items():
        message.concepts[concept].CopyFrom(action)
    return message


def update_rule_request(rule_id: str, body: Any) -> jpb.UpdateRuleRequest:
    """Any subset of the rule's fields; ``concepts`` and ``protect`` replace the whole value."""
    f = _Fields(body, "", ("name", "preset_id", "concepts", "protect"))
    message = jpb.UpdateRuleRequest(rule_id=rule_id)
    if f.has("name"):
        message.name = f.text("name", required=True)
    if f.has("preset_id"):
        message.preset_id = f.text("preset_id", required=True)
    if f.has("concepts"):
        message.replace_concepts = True
        for concept, action in _concept_actions(f.raw("concepts"), "concepts").items():
            message.concepts[concept].CopyFrom(action)
    if f.has("protect"):
        if f.raw("protect") is None:
            raise validation_error("protect must be a list of strings")
        message.replace_protect = True
        message.protect.extend(f.texts("protect"))
    return message


def list_jobs_request(query: Mapping[str, str]) -> jpb.ListJobsRequest:
    raw_size = query.get("page_size")
    size = 0
    if raw_size is not None:
        # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
        # length bound keeps int() from spending time on (or refusing) thousands of digits.
        if not (raw_size.isascii() and raw_size.isdigit() and len(raw_size) <= len(str(INT32_MAX))):
            raise validation_error("page_size must be a positive integer")
        size = _int32(int(raw_size), "page_size")
    return jpb.ListJobsRequest(page_size=size, page_token=query.get("page_token", ""))


def create_job_request(body: Any) -> jpb.CreateJobRequest:
    f = _Fields(body, "", ("preset", "item_count", "content_types"))
    return jpb.CreateJobRequest(
        preset=f.text("preset", required=True),
        item_count=f.integer("item_count", required=True),
        content_types=f.texts("content_types"),
    )


def analyze_request(job_id: str, body: Any) -> jpb.AnalyzeJobRequest:
    f = _object(body, ("concepts",))
    return jpb.AnalyzeJobRequest(job_id=job_id, concepts=f.texts("concepts"))


def _item_choices(value: Any) -> dict[int, pb.ItemChoices]:
    """``{"<idx>": {"<Concept>": {"exclude": [2], "lock": [1]}}}``."""
    if not isinstance(value, dict):
        raise validation_error("instances must be an object keyed by item index")
    out: dict[int, pb.ItemChoices] = {}
    for idx_key, per_concept in value.items():
        if not _INDEX_KEY.fullmatch(idx_key) or int(idx_key) > INT32_MAX:
            raise validation_error(f"instances key {idx_key!r} must be an item index (0, 1, ...)")
        if not isinstance(per_concept, dict):
            raise validation_error(f"instances.{idx_key} must be an object keyed by concept")
        choices = pb.ItemChoices()
        for concept, choice in per_concept.items():
            f = _Fields(choice, f"instances.{idx_key}.{concept}", ("exclude", "lock"))
            choices.concepts[concept].CopyFrom(
                pb.InstanceChoice(exclude=f.integers("exclude"), lock=f.integers("lock"))
            )
        out[int(idx_key)] = choices
    return out


def execute_request(job_id: str, body: Any) -> jpb.ExecuteJobRequest:
    f = _object(body, ("concepts", "protect", "rule_id", "instances", "output_set", "webhook_url", "webhook_events"))
    message = jpb.ExecuteJobRequest(
        job_id=job_id,
        protect=f.texts("protect"),
        rule_id=f.text("rule_id"),
        output_set=f.text("output_set"),
        webhook_url=f.text("webhook_url"),
        webhook_events=f.texts("webhook_events"),
    )
    if f.raw("concepts") is not None:
        for concept, action in _concept_actions(f.raw("concepts"), "concepts").items():
            message.concepts[concept].CopyFrom(action)
    if f.raw("instances") is not None:
        for idx, choices in _item_choices(f.raw("instances")).items():
            message.instances[idx].CopyFrom(choices)
    return message


def _reported_instance(value: Any, where: str) -> pb.InstanceInfo:
    f = _Fields(value, where, ("concept", "number", "score", "box", "area", "mask_url"))
    box = f.raw("box") or []
    if not isinstance(box, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        raise validation_error(f"{where}.box must be a list of numbers")
    area = f.raw("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, int)):
        raise validation_error(f"{where}.area must be an integer")
    return pb.InstanceInfo(
        concept=f.text("concept"),
        number=f.integer("number"),
        score=f.number("score"),
        box=[float(v) for v in box],
        area=area or 0,
        mask_url=f.text("mask_url"),
    )


def item_result_request(job_id: str, body: Any) -> jpb.ReportItemResultRequest:
    f = _Fields(
        body,
        "",
        ("job_id", "idempotency_key", "idx", "status", "output_key", "error", "instances", "protect_check"),
    )
    if f.has("job_id") and f.raw("job_id") != job_id:
        raise validation_error("job_id in the body does not match the job in the path")
    message = jpb.ReportItemResultRequest(
        job_id=job_id,
        idempotency_key=f.text("idempotency_key", required=True),
        idx=f.integer("idx", required=True),
        status=f.text("status", required=True),
        output_key=f.text("output_key"),
        error=f.text("error"),
    )
    instances = f.raw("instances")
    if instances is not None:
        if not isinstance(instances, list):
            raise validation_error("instances must be a list")
        message.instances.extend(_reported_instance(v, f"instances[{i}]") for i, v in enumerate(instances))
    check = f.raw("protect_check")
    if check is not None:
        if not isinstance(check, dict):
            raise validation_error("protect_check must be an object")
        message.protect_check.CopyFrom(_struct(check))
    return message


# ---------------------------------------------------------------------------------------- encoding


def _absent(value: str) -> str | None:
    return value or None


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


def concept_actions_json(concepts: Mapping[str, pb.ConceptAction]) -> JsonObject:
    out: JsonObject = {}
    for concept in sorted(concepts):
        entry = concepts[concept]
        params = struct_json(entry.params)
        params.pop("action", None)
        out[concept] = {"action": entry.action, **params}
    return out


def anon_user_json(m: jpb.CreateAnonUserResponse) -> JsonObject:
    return {
        "token": m.token,
        "user_id": m.user_id,
        "plan": m.plan,
        "credits": m.credits,
        "expires_at": _absent(m.expires_at),
        "refresh_token": m.refresh_token,
        "refresh_expires_at": _absent(m.refresh_expires_at),
        "signup_credits": m.signup_credits,
    }


def refresh_json(m: jpb.RefreshSessionResponse) -> JsonObject:
    return {
        "token": m.token,
        "user_id": m.user_id,
        "expires_at": _absent(m.expires_at),
        "refresh_token": m.refresh_token,
        "refresh_expires_at": _absent(m.refresh_expires_at),
    }


def user_state_json(m: pb.UserState) -> JsonObject:
    return {
        "user_id": m.user_id,
        "plan": m.plan,
        "credits": m.credits,
        "credits_reserved": m.credits_reserved,
        "credits_spent": m.credits_spent,
        "active_jobs": m.active_jobs,
        "max_concurrency": m.max_concurrency,
        "rule_slots_used": m.rule_slots_used,
        "rule_slots_max": m.rule_slots_max,
        "max_batch": m.max_batch,
        "stored_bytes": m.stored_bytes,
        "stored_bytes_max": m.stored_bytes_max,
        "live_jobs": m.live_jobs,
        "live_jobs_max": m.live_jobs_max,
        "analyze_items_per_credit": m.analyze_items_per_credit,
    }


def _template_json(t: pb.Template) -> JsonObject:
    return {
        "id": t.id,
        "width": t.width,
        "height": t.height,
        "fit": t.fit,
        "format": t.format,
        "quality": t.quality,
        "background": t.background,
    }


def preset_json(m: pb.Preset) -> JsonObject:
    templates: dict[str, JsonObject] = {}
    for output_set in m.output_sets:
        for t in output_set.templates:
            templates.setdefault(t.id, _template_json(t))
    return {
        "id": m.id,
        "name": m.name,
        "description": m.description,
        "phase": m.phase,
        "concepts": [
            {
                "id": c.id,
                "name": c.name,
                "prompts": list(c.prompts),
                "default_action": c.default_action,
                "default_params": struct_json(c.default_params),
                "protectable": c.protectable,
            }
            for c in m.concepts
        ],
        "protect_defaults": list(m.protect_defaults),
        # The contract's flat list (every template some output set uses), then the sets themselves.
        "templates": list(templates.values()),
        "output_sets": [
            {"id": s.id, "name": s.name, "templates": [_template_json(t) for t in s.templates]} for s in m.output_sets
        ],
        "actions": struct_json(m.actions),
    }


def presets_json(m: jpb.ListPresetsResponse) -> JsonObject:
    return {
        "presets": [preset_json(p) for p in m.presets],
        "model": {"name": m.model.name, "meaningful": m.model.meaningful},
    }


def rule_json(m: pb.Rule) -> JsonObject:
    return {
        "rule_id": m.rule_id,
        "name": m.name,
        "preset_id": m.preset_id,
        "concepts": concept_actions_json(m.concepts),
        "protect": list(m.protect),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    }


def rules_json(m: jpb.ListRulesResponse) -> JsonObject:
    return {
        "rules": [rule_json(r) for r in m.rules],
        "rule_slots_used": m.rule_slots_used,
        "rule_slots_max": m.rule_slots_max,
    }


def deleted_rule_json(m: jpb.DeleteRuleResponse) -> JsonObject:
    return {"rule_id": m.rule_id, "deleted": m.deleted}


def _instance_json(i: pb.InstanceInfo) -> JsonObject:
    return {
        "concept": i.concept,
        "number": i.number,
        "score": i.score,
        "box": list(i.box),
        "area": i.area,
        "mask_url": _absent(i.mask_url),
    }


def _item_json(i: pb.JobItem) -> JsonObject:
    return {
        "idx": i.idx,
        "status": i.status,
        "input_url": _absent(i.input_url),
        "output_url": _absent(i.output_url),
        "preview_url": _absent(i.preview_url),
        "instances": [_instance_json(x) for x in i.instances],
        "renditions": [
            {
                "template_id": r.template_id,
                "url": _absent(r.url),
                "width": r.width,
                "height": r.height,
                "format": r.format,
            }
            for r in i.renditions
        ],
        "error": _absent(i.error),
        "attempts": i.attempts,
        "analysis": i.analysis or "none",
        "protect_check": struct_json(i.protect_check) if i.HasField("protect_check") else None,
    }


def _webhook_json(m: pb.Job) -> JsonObject | None:
    if not m.webhook_url:
        return None
    out: JsonObject = {"url": m.webhook_url, "events": list(m.webhook_events)}
    if m.webhook_secret:  # the execute answer only
        out["secret"] = m.webhook_secret
    return out


def webhook_deliveries_json(m: jpb.ListWebhookDeliveriesResponse) -> JsonObject:
    return {
        "deliveries": [
            {
                "id": d.id,
                "seq": d.seq,
                "event": d.event,
                "url": d.url,
                "state": d.state,
                "attempts": d.attempts,
                "last_status": d.last_status or None,
                "last_error": _absent(d.last_error),
                "created_at": d.created_at,
                "delivered_at": _absent(d.delivered_at),
                "next_attempt_at": _absent(d.next_attempt_at),
                "log": [{"at": a.at, "status": a.status or None, "error": _absent(a.error), "ms": a.ms} for a in d.log],
            }
            for d in m.deliveries
        ]
    }


def job_json(m: pb.Job, *, with_items: bool = True) -> JsonObject:
    """A job; listings leave ``items`` out (the server sends none there)."""
    out: JsonObject = {
        "job_id": m.job_id,
        "status": m.status,
        "preset": m.preset,
        "total_items": m.total_items,
        "done_items": m.done_items,
        "failed_items": m.failed_items,
        "progress": m.progress,
        "set_url": _absent(m.set_url),
        "urls_expire_at": _absent(m.urls_expire_at),
        "rule_id": _absent(m.rule_id),
        "cost_per_item": m.cost_per_item,
        "credits_reserved": m.credits_reserved,
        "credits_spent": m.credits_spent,
        "analyzed": m.analyzed,
        "error": _absent(m.error),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "upload_expires_at": _absent(m.upload_expires_at),
        "webhook": _webhook_json(m),
    }
    if with_items:
        out["items"] = [_item_json(i) for i in m.items]
    return out


def jobs_json(m: jpb.ListJobsResponse) -> JsonObject:
    return {
        "jobs": [job_json(j, with_items=False) for j in m.jobs],
        "next_page_token": _absent(m.next_page_token),
    }


def created_job_json(m: jpb.CreateJobResponse) -> JsonObject:
    return {
        "job_id": m.job_id,
        "status": m.status,
        "upload_urls": [
            {
                "idx": u.idx,
                "key": u.key,
                "url": u.url,
                "method": u.method,
                "headers": dict(u.headers),
                "expires_at": _absent(u.expires_at),
            }
            for u in m.upload_urls
        ],
        "expires_at": m.expires_at,
        "credits_reserved": m.credits_reserved,
    }


def item_result_json(m: jpb.ReportItemResultResponse) -> JsonObject:
    return {
        "job_id": m.job_id,
        "idx": m.idx,
        "item_status": m.item_status,
        "job_status": m.job_status,
        "duplicate": m.duplicate,
    }


def health_json(m: jpb.GetHealthResponse) -> JsonObject:
    """``components`` keyed by name (database, storage, inference), each ``{ok, detail}``."""
    return {
        "ok": m.ok,
        "components": {c.name: {"ok": c.ok, "detail": c.detail} for c in m.components},
        "model": m.model,
        "model_meaningful": m.model_meaningful,
    }


def stream_token_json(job_id: str, m: jpb.StreamToken) -> JsonObject:
    query = urlencode({"token": m.token})
    return {
        "token": m.token,
        "expires_at": m.expires_at,
        "events_url": f"/jobs/{quote(job_id, safe='')}/events?{query}",
    }
