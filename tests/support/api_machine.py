"""The model behind the random API sequences of ``tests/integration/test_property_api.py``.

``ApiMachine`` holds what the run has seen (owners, statuses, finished items, uploads, callback
receipts), the helpers that run an operation and check the error it raised against the prediction,
the users it starts with, and the invariants checked after every step. The rules live in
``api_machine_workers`` (what workers do) and in the test module (what clients do).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant
from sqlalchemy import func, select

from server.db.tables import JobItemRow, JobRow, RuleRow, UserRow
from server.errors import S3Error
from server.plans import limits_for
from server.service.callbacks import CallbackResult
from server.service.job_state import ACTIVE as ACTIVE_JOB_STATES
from server.service.job_state import TRANSITIONS
from server.service.settle import FINISHED_ITEM_STATES
from server.work.queue import WorkQueue
from tests.support.invariants import check_invariants
from tests.support.stack import jpeg_bytes, make_stack

T = TypeVar("T")

CONTRACT_CODES = frozenset(
    {
        "AUTH_REQUIRED",
        "INVALID_TOKEN",
        "FORBIDDEN",
        "NOT_FOUND",
        "VALIDATION_ERROR",
        "INVALID_STATE",
        "INSUFFICIENT_CREDITS",
        "CONCURRENCY_LIMIT",
        "RULE_SLOT_LIMIT",
        "BATCH_LIMIT",
        "PAYLOAD_TOO_LARGE",
        "QUOTA_EXCEEDED",
        "INFERENCE_UNAVAILABLE",
        "INTERNAL",
    }
)
STARTING_CREDITS = 15
USERS = 3
"""User 0 is on the pro plan (3 concurrent jobs, batch 100), the others on the free plan."""

CONCEPTS = {
    "interior": {"Wall": {"action": "recolor", "value": "white"}},
    "seller": {"Background": {"action": "remove"}},
}
ANALYZE = {"interior": ["Wall", "Floor"], "seller": ["Product", "Background"]}


def _reachable(start: str) -> frozenset[str]:
    seen = {start}
    frontier = [start]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return frozenset(seen)


WHICH = st.integers(0, 1000)
"""Which job an operation acts on (see ``ApiMachine.job_for``)."""

REACHABLE = {status: _reachable(status) for status in TRANSITIONS}
"""Every status a job may be seen in later, given the one it was seen in (itself included)."""

PHOTOS = {
    "jpeg": jpeg_bytes(48, 32, seed=1),
    "garbage": b"this is not an image at all",
    "truncated": jpeg_bytes(48, 32, seed=2)[:150],
}


class ApiMachine(RuleBasedStateMachine):
    """The model the rules predict outcomes from, and the invariants checked after every step."""

    workdir: Path
    """Where each run's database and objects go; set by the test."""

    def __init__(self) -> None:
        super().__init__()
        db_file = self.workdir / f"run-{uuid.uuid4().hex[:8]}.db"
        self.stack = stack = make_stack(
            f"sqlite:///{db_file}", self.workdir / "data", starting_credits=STARTING_CREDITS
        )
        self.queue = WorkQueue(stack.db, stack.settings.queue)
        self.users: list[str] = []
        self.owner: dict[str, str] = {}
        self.seen_status: dict[str, str] = {}
        self.finished_items: dict[tuple[str, int], str] = {}
        self.uploaded: dict[tuple[str, int], str] = {}
        self.receipts: dict[tuple[str, str], CallbackResult] = {}
        self.counter = itertools.count()
        secret = stack.settings.auth.callback_secret
        assert secret is not None
        self.secret = secret
        self.upload_limit = stack.settings.photos.max_upload_bytes

    # -- helpers --------------------------------------------------------------------------------
    def attempt(self, call: Callable[[], T]) -> tuple[T | None, S3Error | None]:
        """Run ``call``; an S3Error is returned (after checking its code), anything else escapes."""
        try:
            return call(), None
        except S3Error as e:
            assert e.code in CONTRACT_CODES, (type(e).__name__, e.code, e.message)
            return None, e

    def expect(self, call: Callable[[], T], error: type[S3Error] | None) -> T | None:
        result, raised = self.attempt(call)
        if error is None:
            assert raised is None, f"unexpected {type(raised).__name__}: {raised}"
        else:
            assert isinstance(raised, error), f"expected {error.__name__}, got {raised!r}"
        return result

    def job_row(self, job_id: str) -> JobRow:
        with self.stack.db.read() as s:
            row = s.get(JobRow, job_id)
            assert row is not None
            return row

    def items(self, job_id: str) -> list[JobItemRow]:
        with self.stack.db.read() as s:
            return list(s.scalars(select(JobItemRow).where(JobItemRow.job_id == job_id).order_by(JobItemRow.idx)))

    def job_for(self, which: int, *states: str) -> str:
        """One of the run's jobs: four times in five one last seen in ``states`` if there is one."""
        ids = list(self.owner)
        preferred = [j for j in ids if self.seen_status[j] in states]
        pool = preferred if preferred and which % 5 else ids
        return pool[(which // 5) % len(pool)]

    def stranger(self, owner: str, pick: int) -> str:
        others = [u for u in self.users if u != owner]
        return others[pick % len(others)]

    # -- users and rules --------------------------------------------------------------------------
    @initialize()
    def sign_up(self) -> None:
        self.users = [self.stack.services.accounts.create_anonymous().user.user_id for _ in range(USERS)]
        with self.stack.db.write() as s:
            pro = s.get(UserRow, self.users[0])
            assert pro is not None
            pro.plan = "pro"

    # -- after every step -------------------------------------------------------------------------
    @invariant()
    def statuses_follow_the_state_machine(self) -> None:
        with self.stack.db.read() as s:
            jobs = {j.id: j.status for j in s.scalars(select(JobRow))}
            items = list(s.scalars(select(JobItemRow)))
        for job_id, status in jobs.items():
            before = self.seen_status.get(job_id, "created")
            assert status in REACHABLE[before], f"job {job_id} went from {before} to {status}"
            self.seen_status[job_id] = status
        for item in items:
            key = (item.job_id, item.idx)
            if key in self.finished_items:
                assert item.status == self.finished_items[key], f"finished item {key} became {item.status}"
            elif item.status in FINISHED_ITEM_STATES:
                self.finished_items[key] = item.status

    @invariant()
    def credits_balance(self) -> None:
        if self.users:
            check_invariants(self.stack.db)

    @invariant()
    def plan_limits_hold(self) -> None:
        with self.stack.db.read() as s:
            plans = {row[0]: str(row[1]) for row in s.execute(select(UserRow.id, UserRow.plan))}
            active_stmt = (
                select(JobRow.user_id, func.count())
                .where(JobRow.status.in_(ACTIVE_JOB_STATES))
                .group_by(JobRow.user_id)
            )
            active = {row[0]: int(row[1]) for row in s.execute(active_stmt)}
            saved = {
                row[0]: int(row[1])
                for row in s.execute(select(RuleRow.user_id, func.count()).group_by(RuleRow.user_id))
            }
        for user, plan in plans.items():
            limits = limits_for(plan)
            assert active.get(user, 0) <= limits.max_concurrency, (user, plan, active)
            assert saved.get(user, 0) <= limits.rule_slots, (user, plan, saved)

    def teardown(self) -> None:
        self.stack.db.dispose()
