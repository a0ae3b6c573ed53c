"""Service views to protobuf messages, and protobuf values back to plain Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from applier.params import describe_actions
from protos.s3.v1 import types_pb2 as pb
from server.clock import rfc3339
from server.errors import ValidationFailed
from server.presets import PresetSpec
from server.service.views import JobItemView, JobView, RuleView, UserView
from server.service.webhooks import DeliveryView


def struct(value: Mapping[str, Any]) -> Struct:
    s = Struct()
    s.update(dict(value))
    return s


def from_struct(value: Struct, *, field: str = "params") -> dict[str, Any]:
    """A client's Struct as plain JSON values; NaN or an infinity in it is the client's error."""
    try:
        return json_format.MessageToDict(value)
    except ValueError as e:  # json_format refuses non-finite numbers
        raise ValidationFailed(f"{field}: must hold finite numbers only", field=field) from e


def concept_actions_from_pb(concepts: Mapping[str, pb.ConceptAction]) -> dict[str, dict[str, Any]]:
    """``{concept: ConceptAction}`` to the API shape ``{concept: {"action": ..., **params}}``."""
    out: dict[str, dict[str, Any]] = {}
    for concept, entry in concepts.items():
        params = from_struct(entry.params, field=f"concepts.{concept}")
        params.pop("action", None)
        out[concept] = {"action": entry.action, **params}
    return out


def concept_actions_to_pb(concepts: Mapping[str, Mapping[str, Any]]) -> dict[str, pb.ConceptAction]:
    return {
        concept: pb.ConceptAction(
            action=str(entry.get("action", "")),
            params=struct({k: v for k, v in entry.items() if k != "action"}),
        )
        for concept, entry in concepts.items()
    }


def user_state(view: UserView) -> pb.UserState:
    return pb.UserState(
        user_id=view.user_id,
        plan=view.plan,
        credits=view.credits_available,
        credits_reserved=view.credits_reserved,
        credits_spent=view.credits_spent,
        active_jobs=view.active_jobs,
        max_concurrency=view.max_concurrency,
        rule_slots_used=view.rule_slots_used,
        rule_slots_max=view.rule_slots_max,
        max_batch=view.max_batch,
        stored_bytes=view.stored_bytes,
        stored_bytes_max=view.stored_bytes_max,
        live_jobs=view.live_jobs,
        live_jobs_max=view.live_jobs_max,
        analyze_items_per_credit=view.analyze_items_per_credit,
    )


def rule(view: RuleView) -> pb.Rule:
    message = pb.Rule(
        rule_id=view.rule_id,
        name=view.name,
        preset_id=view.preset_id,
        protect=list(view.protect),
        created_at=rfc3339(view.created_at),
        updated_at=rfc3339(view.updated_at),
    )
    for concept, entry in concept_actions_to_pb(view.concepts).items():
        message.concepts[concept].CopyFrom(entry)
    return message


def preset(spec: PresetSpec) -> pb.Preset:
    return pb.Preset(
        id=spec.id,
        name=spec.name,
        description=spec.description,
        phase=spec.phase,
        concepts=[
            pb.Concept(
                id=c.id,
                name=c.name,
                prompts=list(c.prompts),
                default_action=c.default_action,
                default_params=struct(c.default_params),
                protectable=c.protectable,
            )
            for c in spec.concepts
        ],
        protect_defaults=list(spec.protect_defaults),
        output_sets=[
            pb.OutputSet(
                id=s.id,
                name=s.name,
                templates=[
                    pb.Template(
                        id=t.id,
                        width=t.width,
                        height=t.height,
                        fit=t.fit,
                        format=t.format,
                        quality=t.quality,
                        background=t.background,
                    )
                    for t in s.templates
                ],
            )
            for s in spec.output_sets
        ],
        actions=struct(describe_actions()),
    )


UrlFor = Callable[[str], str]
"""Object key to a presigned download URL."""


def _instance(entry: Mapping[str, Any], urls: UrlFor | None) -> pb.InstanceInfo:
    mask_key = entry.get("mask_key")
    return pb.InstanceInfo(
        concept=str(entry.get("concept", "")),
        number=int(entry.get("number", 0)),
        score=float(entry.get("score", 0.0)),
        box=[float(v) for v in entry.get("box", [])],
        area=int(entry.get("area", 0)),
        mask_url=urls(mask_key) if urls is not None and mask_key else "",
    )


def job_item(view: JobItemView, urls: UrlFor | None) -> pb.JobItem:
    def url(key: str | None) -> str:
        return urls(key) if urls is not None and key else ""

    return pb.JobItem(
        idx=view.idx,
        status=view.status,
        input_url=url(view.input_key),
        output_url=url(view.output_key),
        preview_url=url(view.preview_key),
        instances=[_instance(i, urls) for i in view.instances],
        renditions=[
            pb.Rendition(
                template_id=str(r.get("template_id", "")),
                url=url(r.get("key")),
                width=int(r.get("width", 0)),
                height=int(r.get("height", 0)),
                format=str(r.get("format", "")),
            )
            for r in view.renditions
        ],
        error=view.error or "",
        attempts=view.attempts,
        analysis=view.analysis,
        protect_check=struct(view.protect_check) if view.protect_check else None,
    )


def job(view: JobView, urls: UrlFor | None) -> pb.Job:
    return pb.Job(
        job_id=view.job_id,
        status=view.status,
        preset=view.preset_id,
        total_items=view.total_items,
        done_items=view.done_items,
        failed_items=view.failed_items,
        progress=round(view.progress, 4),
        items=[job_item(i, urls) for i in view.items or ()],
        set_url=urls(view.set_key) if urls is not None and view.set_key else "",
        rule_id=view.rule_id or "",
        cost_per_item=view.cost_per_item,
        credits_reserved=view.credits_reserved,
        credits_spent=view.credits_spent,
        created_at=rfc3339(view.created_at),
        updated_at=rfc3339(view.updated_at),
        upload_expires_at=rfc3339(view.upload_deadline_at) if view.status == "created" else "",
        analyzed=bool(view.analyzed_concepts),
        error=view.error or "",
        webhook_url=view.webhook_url or "",
        webhook_events=list(view.webhook_events),
        webhook_secret=view.webhook_secret or "",
    )


def instance_choices_from_pb(choices: Mapping[int, pb.ItemChoices]) -> dict[str, Any]:
    return {
        str(idx): {
            concept: {"exclude": list(choice.exclude), "lock": list(choice.lock)}
            for concept, choice in item.concepts.items()
        }
        for idx, item in choices.items()
    }


def instance_from_pb(message: pb.InstanceInfo) -> dict[str, Any]:
    return {
        "concept": message.concept,
        "number": message.number,
        "score": message.score,
        "box": list(message.box),
        "area": message.area,
    }


def webhook_delivery(view: DeliveryView) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=view.id,
        seq=view.seq,
        event=view.event,
        state=view.state,
        attempts=view.attempts,
        last_status=view.last_status or 0,
        last_error=view.last_error or "",
        created_at=rfc3339(view.created_at),
        delivered_at=rfc3339(view.delivered_at),
        next_attempt_at=rfc3339(view.next_attempt_at),
        url=view.url,
        log=[
            pb.WebhookAttempt(
                at=str(a.get("at", "")),
                status=int(a.get("status") or 0),
                error=str(a.get("error") or ""),
                ms=int(a.get("ms") or 0),
            )
            for a in view.log
        ],
    )
