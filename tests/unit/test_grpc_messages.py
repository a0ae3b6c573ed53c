"""Views become messages by the messages' own fields (server.grpc_api.messages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from protos.s3.v1 import types_pb2 as pb
from server.grpc_api.messages import message_from
from server.presets import PRESETS
from server.service.webhooks import DeliveryView

WHEN = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
VIEW = DeliveryView("d1", 3, "job.done", "https://x", "pending", 1, None, None, WHEN, None, WHEN, ())


def test_fields_come_from_same_named_attributes_with_their_conversions() -> None:
    message = message_from(pb.WebhookDelivery, VIEW)
    assert (message.id, message.seq, message.event, message.attempts, message.url) == (
        "d1",
        3,
        "job.done",
        1,
        "https://x",
    )
    assert message.created_at == message.next_attempt_at == "2026-12-01T12:00:00.000Z"
    assert message.delivered_at == "" and message.last_status == 0 and message.last_error == ""  # None: unset


def test_nested_views_become_nested_messages() -> None:
    spec = PRESETS["interior"]
    message = message_from(pb.Preset, spec, actions=None)
    assert [c.id for c in message.concepts] == [c.id for c in spec.concepts]
    first = spec.output_sets[0]
    assert [t.id for t in message.output_sets[0].templates] == [t.id for t in first.templates]
    wall = next(c for c in message.concepts if c.id == "Wall")
    assert dict(wall.default_params) == dict(next(c for c in spec.concepts if c.id == "Wall").default_params)


def test_given_values_win_and_a_field_nobody_supplies_is_an_error() -> None:
    assert message_from(pb.WebhookDelivery, VIEW, url="https://y").url == "https://y"
    with pytest.raises(AttributeError, match="no field nonsense"):
        message_from(pb.WebhookDelivery, VIEW, nonsense=1)

    @dataclass(frozen=True)
    class Short:  # no `seq` ...: a proto field the view lacks is not left empty silently
        id: str

    with pytest.raises(AttributeError, match=r"WebhookDelivery\.seq: not given and not on Short"):
        message_from(pb.WebhookDelivery, Short("d1"))
