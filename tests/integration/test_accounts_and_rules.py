"""Accounts and saved rules on each database: limits, validation, isolation, real concurrency."""

from __future__ import annotations

import threading
from typing import NotRequired, TypedDict

import pytest

from server.errors import InvalidToken, NotFound, RuleSlotLimit, ValidationFailed
from server.service.concept_action import actions_from_stored
from tests.support.invariants import check_invariants
from tests.support.stack import Stack

WALL_WHITE = {"Wall": {"action": "recolor", "value": "white"}}


class RuleBody(TypedDict):
    """The fields of a rule a validation case sends."""

    name: str
    preset_id: str
    concepts: dict[str, dict[str, object]]
    protect: NotRequired[list[str]]


def test_anonymous_user_starts_on_free_plan(stack: Stack) -> None:
    created = stack.services.accounts.create_anonymous("device-1")
    me = stack.services.accounts.me(created.user.user_id)
    assert (me.plan, me.credits_available, me.active_jobs) == ("free", 100, 0)
    assert (me.max_concurrency, me.rule_slots_used, me.rule_slots_max, me.max_batch) == (1, 0, 2, 10)
    assert stack.services.tokens.verify(created.token.token) == me.user_id
    check_invariants(stack.db)


def test_unknown_user_token_is_invalid(stack: Stack) -> None:
    with pytest.raises(InvalidToken):
        stack.services.accounts.me("00000000-0000-0000-0000-000000000000")


def test_rule_crud_normalises_and_frees_slots(stack: Stack) -> None:
    user = stack.services.accounts.create_anonymous().user.user_id
    rules = stack.services.rules
    rule = rules.create(
        user, name=" walls ", preset_id="interior", concepts=actions_from_stored(WALL_WHITE), protect=["Text"]
    )
    assert rule.name == "walls"
    assert rule.concepts["Wall"] == {"action": "recolor", "value": "#ffffff", "strength": 1.0, "detail": 1.0}
    updated = rules.update(
        user, rule.rule_id, concepts=actions_from_stored({"Floor": {"action": "material", "texture": "wood"}})
    )
    assert set(updated.concepts) == {"Floor"} and updated.protect == ["Text"]
    assert [r.rule_id for r in rules.list(user)] == [rule.rule_id]
    rules.create(
        user,
        name="two",
        preset_id="seller",
        concepts=actions_from_stored({"Background": {"action": "remove"}}),
        protect=[],
    )
    with pytest.raises(RuleSlotLimit):
        rules.create(user, name="three", preset_id="interior", concepts=actions_from_stored(WALL_WHITE), protect=[])
    rules.delete(user, rule.rule_id)
    assert rules.slots(user) == (1, 2)
    rules.create(user, name="three", preset_id="interior", concepts=actions_from_stored(WALL_WHITE), protect=[])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "preset_id": "interior", "concepts": WALL_WHITE}, "name"),
        ({"name": "x", "preset_id": "garden", "concepts": WALL_WHITE}, "preset_id"),
        ({"name": "x", "preset_id": "interior", "concepts": {"Sky": {"action": "keep"}}}, "concepts.Sky"),
        ({"name": "x", "preset_id": "interior", "concepts": {"Wall": {"action": "paint"}}}, "concepts.Wall.action"),
        ({"name": "x", "preset_id": "interior", "concepts": {"Wall": {"action": "recolor"}}}, "concepts.Wall.value"),
        (
            {"name": "x", "preset_id": "interior", "concepts": {"Wall": {"action": "recolor", "value": "#12"}}},
            "concepts.Wall.value",
        ),
        (
            {"name": "x", "preset_id": "interior", "concepts": {"Wall": {"action": "blur", "radius": 99}}},
            "concepts.Wall.radius",
        ),
        ({"name": "x", "preset_id": "interior", "concepts": WALL_WHITE, "protect": ["Sky"]}, "protect[0]"),
        (
            {
                "name": "x",
                "preset_id": "interior",
                "concepts": {"Floor": {"action": "material", "texture": "upload", "texture_ref": "t1"}},
            },
            "concepts.Floor.texture",
        ),
        (
            {"name": "x", "preset_id": "interior", "concepts": {"Text": {"action": "blur"}}, "protect": ["Text"]},
            "concepts.Text",
        ),
    ],
)
def test_rule_validation_names_the_field(stack: Stack, body: RuleBody, field: str) -> None:
    user = stack.services.accounts.create_anonymous().user.user_id
    with pytest.raises(ValidationFailed) as err:
        stack.services.rules.create(
            user,
            name=body["name"],
            preset_id=body["preset_id"],
            concepts=actions_from_stored(body["concepts"]),
            protect=body.get("protect", []),
        )
    assert err.value.field == field
    assert err.value.message.startswith(field)
    assert stack.services.rules.slots(user) == (0, 2)


def test_another_users_rule_is_not_found(stack: Stack) -> None:
    alice = stack.services.accounts.create_anonymous().user.user_id
    bob = stack.services.accounts.create_anonymous().user.user_id
    rule = stack.services.rules.create(
        alice, name="a", preset_id="interior", concepts=actions_from_stored(WALL_WHITE), protect=[]
    )
    for call in (
        lambda: stack.services.rules.get(bob, rule.rule_id),
        lambda: stack.services.rules.update(bob, rule.rule_id, name="mine"),
        lambda: stack.services.rules.delete(bob, rule.rule_id),
        lambda: stack.services.rules.get(bob, "not-a-uuid"),
    ):
        with pytest.raises(NotFound):
            call()
    assert stack.services.rules.get(alice, rule.rule_id).name == "a"


def test_concurrent_rule_creates_never_exceed_the_slots(stack: Stack) -> None:
    user = stack.services.accounts.create_anonymous().user.user_id
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        barrier.wait()
        try:
            stack.services.rules.create(
                user, name=f"r{n}", preset_id="interior", concepts=actions_from_stored(WALL_WHITE), protect=[]
            )
            result = "ok"
        except RuleSlotLimit:
            result = "limit"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["limit"] * 6 + ["ok"] * 2
    assert stack.services.rules.slots(user) == (2, 2)
