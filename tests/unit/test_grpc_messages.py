"""Views become messages by the messages' own fields (server.grpc_api.messages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from protos.s3.v1 import types_pb2 as pb
from server.grpc_api.messages import message_from


@dataclass(frozen=True)
class _Attempt:
    at: str
    status: int | None
    error: str | None
    ms: int


@dataclass(frozen=True)
class _Delivery:
    id: str
    seq: int
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    url: str
    log: tuple[_Attempt, ...]


WHEN = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def test_fields_come_from_same_named_attributes_with_their_conversions() -> None:
    view = _Delivery(
        "d1", 3, "job.done", "pending", 1, None, None, WHEN, None, WHEN, "https://x", (_Attempt("t", 500, "e", 9),)
    )
    message = message_from(pb.WebhookDelivery, view)
    assert (message.id, message.seq, message.event, message.attempts, message.url) == (
        "d1",
        3,
        "job.done",
        1,
        "https://x",
    )
    assert message.created_at == message.next_attempt_at == "2026-12-01T12:00:00.000Z"
    assert message.delivered_at == "" and message.last_status == 0 and message.last_error == ""  # None: unset
    assert [(a.at, a.status, a.error, a.ms) for a in message.log] == [("t", 500, "e", 9)]  # nested dataclasses


def test_given_values_win_and_a_field_nobody_supplies_is_an_error() -> None:
    view = _Delivery("d1", 3, "job.done", "pending", 1, None, None, WHEN, None, None, "https://x", ())
    assert message_from(pb.WebhookDelivery, view, url="https://y").url == "https://y"
    with pytest.raises(AttributeError, match="no field nonsense"):
        message_from(pb.WebhookDelivery, view, nonsense=1)

    @dataclass(frozen=True)
    class _Short:  # no `log`: a proto field the view does not have is not left empty silently
        id: str

    with pytest.raises(AttributeError, match=r"WebhookDelivery\.seq: not given and not on _Short"):
        message_from(pb.WebhookDelivery, _Short("d1"))
