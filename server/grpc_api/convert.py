"""Service views to protobuf messages, and protobuf values back to plain Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from applier.params import describe_actions
from protos.s3.v1 import types_pb2 as pb
from server.errors import ValidationFailed
from server.grpc_api.messages import message_from, struct
from server.item_records import StoredInstance, reported
from server.presets import PresetSpec
from server.service.concept_action import ConceptAction, actions_from_stored
from server.service.instance_choices import ChoiceRequest, InstanceChoice
from server.service.views import JobItemView, JobView, RuleView, UserView
from server.service.webhooks import DeliveryView


def from_struct(value: Struct, *, field: str = "params") -> dict[str, Any]:
    """A client's Struct as plain JSON values; NaN or an infinity in it is the client's error."""
    try:
        return json_format.MessageToDict(value)
    except ValueError as e:  # json_format refuses non-finite numbers
        raise ValidationFailed(f"{field}: must hold finite numbers only", field=field) from e


def concept_actions_from_pb(concepts: Mapping[str, pb.ConceptAction]) -> dict[str, ConceptAction]:
    return {
        concept: ConceptAction.of(entry.action, from_struct(entry.params, field=f"concepts.{concept}"))
        for concept, entry in concepts.items()
    }


def concept_actions_to_pb(stored: Mapping[str, Mapping[str, Any]]) -> dict[str, pb.ConceptAction]:
    """A rule's stored actions as the message states them."""
    return {
        concept: pb.ConceptAction(action=entry.action, params=struct(entry.params))
        for concept, entry in actions_from_stored(stored).items()
    }


def user_state(view: UserView) -> pb.UserState:
    return message_from(pb.UserState, view, credits=view.credits_available)


def rule(view: RuleView) -> pb.Rule:
    return message_from(pb.Rule, view, concepts=concept_actions_to_pb(view.concepts))


def preset(spec: PresetSpec) -> pb.Preset:
    return message_from(pb.Preset, spec, actions=struct(describe_actions()))


UrlFor = Callable[[str], str]
"""Object key to a presigned download URL."""


def _instance(entry: StoredInstance, urls: UrlFor | None) -> pb.InstanceInfo:
    mask_key = entry.mask_key
    return pb.InstanceInfo(
        concept=entry.concept,
        number=entry.number,
        score=entry.score,
        box=entry.box,
        area=entry.area,
        mask_url=urls(mask_key) if urls is not None and mask_key else "",
    )


def job_item(view: JobItemView, urls: UrlFor | None) -> pb.JobItem:
    def url(key: str | None) -> str:
        return urls(key) if urls is not None and key else ""

    return message_from(
        pb.JobItem,
        view,
        input_url=url(view.input_key),
        output_url=url(view.output_key),
        preview_url=url(view.preview_key),
        instances=[_instance(i, urls) for i in view.instances],
        renditions=[
            pb.Rendition(template_id=r.template_id, url=url(r.key), width=r.width, height=r.height, format=r.format)
            for r in view.renditions
        ],
        protect_check=view.protect_check or None,
    )


def job(view: JobView, urls: UrlFor | None, *, urls_expire_at: datetime | None = None) -> pb.Job:
    """``urls_expire_at``: when the presigned URLs ``urls`` makes expire (unset without URLs)."""
    return message_from(
        pb.Job,
        view,
        preset=view.preset_id,
        progress=round(view.progress, 4),
        items=[job_item(i, urls) for i in view.items or ()],
        set_url=urls(view.set_key) if urls is not None and view.set_key else "",
        upload_expires_at=view.upload_deadline_at if view.status == "created" else None,
        analyzed=bool(view.analyzed_concepts),
        urls_expire_at=urls_expire_at,
    )


def instance_choices_from_pb(choices: Mapping[int, pb.ItemChoices]) -> ChoiceRequest:
    return {
        idx: {
            concept: InstanceChoice(exclude=tuple(choice.exclude), lock=tuple(choice.lock))
            for concept, choice in item.concepts.items()
        }
        for idx, item in choices.items()
    }


def instances_from_pb(messages: Sequence[pb.InstanceInfo]) -> list[StoredInstance]:
    """Instances a remote worker reported; ``ValidationFailed`` naming the bad one's field (a
    callback stores no masks, so its instances have none)."""
    docs = [
        {"concept": m.concept, "number": m.number, "score": m.score, "box": list(m.box), "area": m.area}
        for m in messages
    ]
    return reported(StoredInstance, docs, field="instances")


def webhook_delivery(view: DeliveryView) -> pb.WebhookDelivery:
    return message_from(
        pb.WebhookDelivery,
        view,
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
