"""Saved rules: set once, reused on whole albums. Each rule uses one of the plan's rule slots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.engine import Database
from server.db.tables import RuleRow
from server.errors import NotFound, RuleSlotLimit
from server.plans import limits_for
from server.service import validation
from server.service.concept_action import ConceptActions, actions_from_stored
from server.service.idempotency import Record
from server.service.ids import canonical_id
from server.service.locking import count_rules, get_user, lock_user
from server.service.views import RuleView


def rule_view(row: RuleRow) -> RuleView:
    return RuleView(
        rule_id=row.id,
        name=row.name,
        preset_id=row.preset_id,
        concepts=dict(row.concepts),
        protect=list(row.protect),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def owned_rule(session: Session, user_id: str, rule_id: str) -> RuleRow:
    """The user's rule; another user's rule is reported missing, never forbidden."""
    parsed = canonical_id(rule_id)
    row = session.get(RuleRow, parsed) if parsed else None
    if row is None or row.user_id != user_id:
        raise NotFound("rule not found")
    return row


class Rules:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        user_id: str,
        *,
        name: str,
        preset_id: str,
        concepts: ConceptActions,
        protect: Sequence[str] = (),
        record: Record[RuleView] | None = None,
    ) -> RuleView:
        clean_name = validation.rule_name(name)
        preset = validation.preset_by_id(preset_id)
        clean_concepts = validation.concept_actions(preset, concepts)
        clean_protect = validation.protect_layers(preset, protect)
        validation.no_conflicts(clean_concepts, clean_protect)
        now = utcnow()
        with self._db.write() as s:
            user = lock_user(s, user_id)
            slots = limits_for(user.plan).rule_slots
            if count_rules(s, user_id) >= slots:
                raise RuleSlotLimit(f"all {slots} rule slots of the {user.plan} plan are in use; delete a rule first")
            row = RuleRow(
                id=str(uuid.uuid4()),
                user_id=user_id,
                name=clean_name,
                preset_id=preset.id,
                concepts=clean_concepts,
                protect=clean_protect,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            view = rule_view(row)
            if record is not None:
                record(s, view)
            return view

    def list(self, user_id: str) -> list[RuleView]:
        with self._db.read() as s:
            get_user(s, user_id)
            rows = s.scalars(select(RuleRow).where(RuleRow.user_id == user_id).order_by(RuleRow.created_at, RuleRow.id))
            return [rule_view(r) for r in rows]

    def get(self, user_id: str, rule_id: str) -> RuleView:
        with self._db.read() as s:
            return rule_view(owned_rule(s, user_id, rule_id))

    def update(
        self,
        user_id: str,
        rule_id: str,
        *,
        name: str | None = None,
        preset_id: str | None = None,
        concepts: ConceptActions | None = None,
        protect: Sequence[str] | None = None,
    ) -> RuleView:
        """Fields given as ``None`` keep their value; the result is validated as a whole."""
        with self._db.write() as s:
            row = owned_rule(s, user_id, rule_id)
            preset = validation.preset_by_id(row.preset_id if preset_id is None else preset_id)
            new_name = row.name if name is None else validation.rule_name(name)
            kept = actions_from_stored(row.concepts) if concepts is None else concepts
            new_concepts = validation.concept_actions(preset, kept)
            new_protect = validation.protect_layers(preset, row.protect if protect is None else protect)
            validation.no_conflicts(new_concepts, new_protect)
            row.name = new_name
            row.preset_id = preset.id
            row.concepts = new_concepts
            row.protect = new_protect
            row.updated_at = utcnow()
            s.flush()
            return rule_view(row)

    def delete(self, user_id: str, rule_id: str) -> None:
        with self._db.write() as s:
            lock_user(s, user_id)
            s.delete(owned_rule(s, user_id, rule_id))

    def slots(self, user_id: str) -> tuple[int, int]:
        """(used, max) rule slots of the user."""
        with self._db.read() as s:
            user = get_user(s, user_id)
            return count_rules(s, user_id), limits_for(user.plan).rule_slots
