"""Random sequences of API operations across several users, against the real service layer.

A hypothesis state machine drives what clients, remote workers, in-process workers and the sweeper
do: create jobs, upload (good, broken or no photos), confirm, analyze, execute, report results by
callback (new, replayed, with a bad secret), claim / complete / fail / release work from the queue,
let leases lapse, package sets, cancel, sweep abandoned uploads, save and delete rules. Each
operation's outcome is predicted from what the database says just before it, and after every step:

- job statuses only ever moved along the contract's transitions, and a finished item never changes;
- granted = available + reserved + spent per user, the ledger agrees (``check_invariants``);
- active jobs <= plan concurrency and rules <= rule slots for every user;
- every error raised is a ``server.errors.S3Error`` with one of the contract's codes (anything else
  escapes and fails the test).

Each run (hypothesis example) gets its own fresh SQLite database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from server.clock import utcnow
from server.db.tables import JobItemRow, JobRow, RuleRow, UserRow
from server.errors import (
    BatchLimit,
    ConcurrencyLimit,
    Forbidden,
    InsufficientCredits,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuleSlotLimit,
    S3Error,
    ValidationFailed,
)
from server.plans import limits_for
from server.queue import Claim, WorkQueue
from server.service.callbacks import CallbackResult, ItemReport
from server.service.job_state import TERMINAL, TRANSITIONS
from server.service.ledger import analysis_price
from server.service.locking import ACTIVE_JOB_STATES
from server.service.settle import FINISHED_ITEM_STATES, ItemOutputs
from server.service.sweeper import expire_abandoned_uploads, purge_expired_jobs
from server.storage import keys
from tests.support.invariants import check_invariants
from tests.support.stack import jpeg_bytes, make_stack

pytestmark = pytest.mark.integration

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
    claims = Bundle("claims")
    saved_rules = Bundle("saved_rules")

    workdir: Path
    """Where each run's database and objects go; set by the test."""

    def __init__(self) -> None:
        super().__init__()
        db_file = self.workdir / f"run-{uuid.uuid4().hex[:8]}.db"
        self.stack = stack = make_stack(
            f"sqlite:///{db_file}", self.workdir / "data", starting_credits=STARTING_CREDITS
        )
        self.queue = WorkQueue(stack.db, stack.settings)
        self.users: list[str] = []
        self.owner: dict[str, str] = {}
        self.seen_status: dict[str, str] = {}
        self.finished_items: dict[tuple[str, int], str] = {}
        self.uploaded: dict[tuple[str, int], str] = {}
        self.receipts: dict[tuple[str, str], CallbackResult] = {}
        self.counter = itertools.count()
        secret = stack.settings.callback_secret
        assert secret is not None
        self.secret = secret
        self.upload_limit = stack.settings.max_upload_bytes

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

    @rule(
        target=saved_rules,
        who=st.integers(0, USERS - 1),
        preset=st.sampled_from(["interior", "seller"]),
        ok=st.booleans(),
    )
    def create_rule(self, who: int, preset: str, ok: bool) -> object:
        user = self.users[who]
        me = self.stack.services.accounts.me(user)
        concepts = CONCEPTS[preset] if ok else {"Sky": {"action": "keep"}}
        error = None if ok and me.rule_slots_used < me.rule_slots_max else ValidationFailed if not ok else RuleSlotLimit
        made = self.expect(
            lambda: self.stack.services.rules.create(
                user, name=f"rule {next(self.counter)}", preset_id=preset, concepts=concepts, protect=[]
            ),
            error,
        )
        return multiple() if made is None else (user, made.rule_id)

    @rule(rule_ref=saved_rules, as_owner=st.booleans(), pick=st.integers(0, 5))
    def delete_rule(self, rule_ref: tuple[str, str], as_owner: bool, pick: int) -> None:
        owner, rule_id = rule_ref
        exists = any(r.rule_id == rule_id for r in self.stack.services.rules.list(owner))
        who = owner if as_owner else self.stranger(owner, pick)
        self.expect(lambda: self.stack.services.rules.delete(who, rule_id), None if as_owner and exists else NotFound)

    # -- the job's life --------------------------------------------------------------------------
    @rule(
        who=st.integers(0, USERS - 1),
        preset=st.sampled_from(["interior", "seller", "interior", "garden"]),
        count=st.one_of(st.integers(1, 3), st.integers(-1, 12)),
    )
    def create_job(self, who: int, preset: str, count: int) -> None:
        user = self.users[who]
        me = self.stack.services.accounts.me(user)
        limits = limits_for(me.plan)
        error: type[S3Error] | None = None
        if preset == "garden" or count < 1:
            error = ValidationFailed
        elif count > limits.max_batch:
            error = BatchLimit
        elif me.active_jobs >= limits.max_concurrency:
            error = ConcurrencyLimit
        elif (
            me.live_jobs >= limits.max_live_jobs
            or me.stored_bytes + count * self.upload_limit > limits.max_stored_bytes
        ):
            error = QuotaExceeded
        elif me.credits_available < count:
            error = InsufficientCredits
        created = self.expect(lambda: self.stack.services.jobs.create(user, preset_id=preset, item_count=count), error)
        if created is None:
            return
        job_id = created.job.job_id
        assert created.job.status == "created" and len(created.uploads) == count
        self.owner[job_id] = user
        self.seen_status[job_id] = "created"

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, idx=st.integers(0, 11), kind=st.sampled_from(["jpeg", "jpeg", "garbage", "truncated"]))
    def upload(self, which: int, idx: int, kind: str) -> None:
        job_id = self.job_for(which, "created")
        job = self.job_row(job_id)
        idx %= job.total_items
        self.stack.store.put(keys.input_key(job.user_id, job_id, idx), PHOTOS[kind], content_type="image/jpeg")
        self.uploaded[(job_id, idx)] = kind

    @precondition(lambda self: self.owner)
    @rule(which=WHICH)
    def upload_all(self, which: int) -> None:
        self._upload_all(self.job_for(which, "created"))

    def _upload_all(self, job_id: str) -> None:
        job = self.job_row(job_id)
        for idx in range(job.total_items):
            self.stack.store.put(keys.input_key(job.user_id, job_id, idx), PHOTOS["jpeg"], content_type="image/jpeg")
            self.uploaded[(job_id, idx)] = "jpeg"

    @precondition(lambda self: self.owner)
    @rule(which=WHICH)
    def advance(self, which: int) -> None:
        """What a well-behaved client and worker do next, so runs also reach the later states."""
        job_id = self.job_for(which, "created", "uploaded", "queued", "running")
        job = self.job_row(job_id)
        if job.status == "created":
            self._upload_all(job_id)
            self._confirm(job_id, as_owner=True, pick=0)
            if which % 2:  # otherwise leave it uploaded, where analyze and execute act
                self._execute(job_id, variant="ok")
        elif job.status == "uploaded":
            self._execute(job_id, variant="ok")
        elif job.status in ("queued", "running"):
            claim = self.claim_work(worker=9)
            if isinstance(claim, Claim):
                self._complete(claim)

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, as_owner=st.booleans(), pick=st.integers(0, 5))
    def confirm(self, which: int, as_owner: bool, pick: int) -> None:
        self._confirm(self.job_for(which, "created"), as_owner, pick)

    def _confirm(self, job_id: str, as_owner: bool, pick: int) -> None:
        owner = self.owner[job_id]
        job = self.job_row(job_id)
        kinds = [self.uploaded.get((job_id, i)) for i in range(job.total_items)]
        error: type[S3Error] | None = None
        if not as_owner:
            error = NotFound
        elif job.status != "created":
            error = InvalidState
        elif None in kinds or all(k != "jpeg" for k in kinds):
            error = ValidationFailed
        who = owner if as_owner else self.stranger(owner, pick)
        view = self.expect(lambda: self.stack.services.jobs.confirm_upload(who, job_id), error)
        if view is not None:
            assert view.status == "uploaded" and view.items is not None
            assert [i.status for i in view.items] == ["uploaded" if k == "jpeg" else "failed" for k in kinds]

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, ok=st.booleans())
    def analyze(self, which: int, ok: bool) -> None:
        job_id = self.job_for(which, "uploaded")
        job = self.job_row(job_id)
        items = self.items(job_id)
        running = any(i.stage == "analyze" for i in items)
        concepts = ANALYZE[job.preset_id] if ok else ["Sky"]
        # Only photos missing one of the concepts are analysed, and paid for (a fraction of execute).
        targets = [i for i in items if i.status == "uploaded" and not set(concepts) <= set(i.analyzed_concepts or [])]
        price = analysis_price(len(targets), self.stack.settings.analyze_items_per_credit)
        available = self.stack.services.accounts.me(job.user_id).credits_available
        error: type[S3Error] | None = None
        if job.status != "uploaded":
            error = InvalidState
        elif running or not ok:
            error = ValidationFailed
        elif targets and job.analysis_passes >= self.stack.settings.max_analyses_per_job:
            error = QuotaExceeded
        elif price > available:
            error = InsufficientCredits
        view = self.expect(lambda: self.stack.services.jobs.analyze(job.user_id, job_id, concepts), error)
        if view is not None:
            after = self.job_row(job_id)
            assert after.analysis_credits_reserved == price, (after.analysis_credits_reserved, price)
            assert after.analysis_passes == job.analysis_passes + (1 if targets else 0)

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, variant=st.sampled_from(["ok", "ok", "rule", "no-concepts", "unknown-set", "bad-instance"]))
    def execute(self, which: int, variant: str) -> None:
        self._execute(self.job_for(which, "uploaded"), variant)

    def _execute(self, job_id: str, variant: str) -> None:
        job = self.job_row(job_id)
        user = job.user_id
        running = any(i.stage == "analyze" for i in self.items(job_id))
        same_preset = [r for r in self.stack.services.rules.list(user) if r.preset_id == job.preset_id]
        args: dict[str, Any] = {
            "concepts": CONCEPTS[job.preset_id],
            "protect": None,
            "rule_id": None,
            "instances": None,
            "output_set": None,
        }
        valid = True
        if variant == "rule":
            if same_preset:
                args.update(concepts=None, rule_id=same_preset[0].rule_id)
            else:
                args.update(rule_id="00000000-0000-0000-0000-000000000000")
                valid = False
        elif variant == "no-concepts":
            args.update(concepts={})
            valid = False
        elif variant == "unknown-set":
            args.update(output_set="billboard")
            valid = False
        elif variant == "bad-instance":
            args.update(instances={"99": {"Wall": {"exclude": [1]}}})
            valid = False
        error: type[S3Error] | None = None
        if job.status != "uploaded" or running:
            error = InvalidState
        elif not valid:
            error = NotFound if variant == "rule" else ValidationFailed
        view = self.expect(lambda: self.stack.services.jobs.execute(user, job_id, **args), error)
        if view is not None:
            assert view.status == "queued"

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, how=st.sampled_from(["cancel", "cancel-as-stranger", "deadline"]), pick=st.integers(0, 5))
    def abort(self, which: int, how: str, pick: int) -> None:
        """The owner cancels, a stranger tries to, or the upload deadline passes and the sweeper runs."""
        if how == "deadline":
            self._sweep_after_deadline(self.job_for(which, "created"))
        else:
            self._cancel(self.job_for(which, "created", "uploaded", "queued", "running"), how == "cancel", pick)

    def _cancel(self, job_id: str, as_owner: bool, pick: int) -> None:
        owner = self.owner[job_id]
        status = self.job_row(job_id).status
        error = NotFound if not as_owner else InvalidState if status in TERMINAL else None
        who = owner if as_owner else self.stranger(owner, pick)
        view = self.expect(lambda: self.stack.services.jobs.cancel(who, job_id), error)
        if view is not None:
            assert view.status == "canceled" and view.credits_reserved == 0

    @precondition(lambda self: self.owner)
    @rule(which=WHICH, pick=st.integers(0, 5))
    def read_job(self, which: int, pick: int) -> None:
        job_id = self.job_for(which)
        owner = self.owner[job_id]
        view = self.expect(lambda: self.stack.services.jobs.get(owner, job_id), None)
        assert view is not None and view.status == self.job_row(job_id).status
        self.expect(lambda: self.stack.services.jobs.get(self.stranger(owner, pick), job_id), NotFound)

    def _sweep_after_deadline(self, job_id: str) -> None:
        with self.stack.db.write() as s:
            row = s.get(JobRow, job_id)
            assert row is not None
            was_created = row.status == "created"
            row.upload_deadline_at = utcnow() - timedelta(seconds=1)
        swept = expire_abandoned_uploads(self.stack.db)
        assert swept == (1 if was_created else 0)
        if was_created:
            assert self.job_row(job_id).status == "canceled"

    @precondition(lambda self: self.owner)
    @rule(which=WHICH)
    def purge(self, which: int) -> None:
        """A finished job's retention ends: the sweeper deletes its objects and it stops counting."""
        job_id = self.job_for(which, "done", "failed", "canceled")
        with self.stack.db.write() as s:
            row = s.get(JobRow, job_id)
            assert row is not None
            if row.status not in TERMINAL:
                return
            long_ago = utcnow() - timedelta(days=400)
            row.created_at = row.finished_at = long_ago
            was_live = row.purged_at is None
        user = self.owner[job_id]
        before = self.stack.services.accounts.me(user).live_jobs
        purged = purge_expired_jobs(self.stack.db, self.stack.store, self.stack.settings)
        assert purged == (1 if was_live else 0)
        assert self.job_row(job_id).purged_at is not None
        assert self.stack.services.accounts.me(user).live_jobs == before - purged
        if was_live:  # (the model's uploads write past the gateway, so a purged key can be written again)
            for idx in range(self.job_row(job_id).total_items):
                assert self.stack.store.head(keys.input_key(user, job_id, idx)) is None

    # -- remote workers ---------------------------------------------------------------------------
    @precondition(lambda self: self.owner)
    @rule(
        which=WHICH,
        idx=st.integers(0, 11),
        done=st.booleans(),
        key=st.sampled_from(["new", "new", "replay"]),
        good_secret=st.booleans(),
    )
    def callback(self, which: int, idx: int, done: bool, key: str, good_secret: bool) -> None:
        job_id = self.job_for(which, "queued", "running")
        job = self.job_row(job_id)
        open_items = [i.idx for i in self.items(job_id) if i.status not in FINISHED_ITEM_STATES]
        # Mostly an item still open; sometimes any, or one the job does not have.
        idx = open_items[idx % len(open_items)] if open_items and idx % 4 else idx % (job.total_items + 1)
        previous = [k for (j, k) in self.receipts if j == job_id]
        replay = key == "replay" and bool(previous)
        idem = previous[idx % len(previous)] if replay else f"cb-{next(self.counter)}"
        item = next((i for i in self.items(job_id) if i.idx == idx), None)
        report = ItemReport(
            idempotency_key=idem,
            idx=idx,
            status="done" if done else "failed",
            output_key=keys.output_key(job.user_id, job_id, idx),
            error="" if done else "remote worker failed",
        )
        first = self.receipts.get((job_id, idem))
        error: type[S3Error] | None = None
        if not good_secret:
            error = Forbidden
        elif first is not None:
            error = None
        elif job.status not in ("queued", "running"):
            error = InvalidState
        elif item is None:
            error = NotFound
        elif item.status in FINISHED_ITEM_STATES:
            error = InvalidState
        secret = self.secret if good_secret else "not-the-secret-" + "x" * 20
        result = self.expect(lambda: self.stack.services.callbacks.report(secret, job_id, report), error)
        if result is None:
            return
        if first is not None:
            # A replay is answered with the first answer, and changes nothing.
            assert result.duplicate and (result.idx, result.item_status) == (first.idx, first.item_status)
            return
        assert not result.duplicate and result.item_status == report.status
        self.receipts[(job_id, idem)] = result

    # -- in-process workers (the queue) -----------------------------------------------------------
    @rule(target=claims, worker=st.integers(0, 2))
    def claim(self, worker: int) -> object:
        return self.claim_work(worker)

    def claim_work(self, worker: int) -> object:
        got, _ = self.attempt(lambda: self.queue.claim(f"worker-{worker}"))
        if got is None:
            return multiple()
        if got.stage != "package":
            item = next(i for i in self.items(got.job_id) if i.idx == got.idx)
            assert item.lease_owner == got.owner and item.attempts == got.attempt
            assert item.status not in FINISHED_ITEM_STATES
        return got

    def _still_owns(self, claim: Claim) -> bool:
        job = self.job_row(claim.job_id)
        if claim.stage == "package":
            return job.package_lease_owner == claim.owner and job.status == "running"
        item = next(i for i in self.items(claim.job_id) if i.idx == claim.idx)
        return (
            item.lease_owner == claim.owner and item.status not in FINISHED_ITEM_STATES and job.status not in TERMINAL
        )

    @rule(claim=claims)
    def complete(self, claim: Claim) -> None:
        self._complete(claim)

    def _complete(self, claim: Claim) -> None:
        owns = self._still_owns(claim)
        user = self.owner[claim.job_id]
        if claim.stage == "execute":
            outputs = ItemOutputs(output_key=keys.output_key(user, claim.job_id, claim.idx))
            recorded = self.expect(lambda: self.queue.complete_item(claim, outputs), None)
        elif claim.stage == "analyze":
            recorded = self.expect(lambda: self.queue.complete_analysis(claim, []), None)
        else:
            set_key = keys.set_key(user, claim.job_id)
            recorded = self.expect(lambda: self.queue.complete_package(claim, set_key), None)
        assert recorded is owns, (claim, recorded, owns)

    @rule(claim=claims, retryable=st.booleans())
    def fail(self, claim: Claim, retryable: bool) -> None:
        self.expect(lambda: self.queue.fail(claim, "worker error", retryable=retryable), None)

    @rule(claim=claims, what=st.sampled_from(["heartbeat", "release", "lapse"]))
    def worker_life(self, claim: Claim, what: str) -> None:
        """A worker heartbeats, gives its work back on shutdown, or goes silent (its lease lapses)."""
        if what == "heartbeat":
            owns = self._still_owns(claim)
            alive = self.expect(lambda: self.queue.heartbeat(claim), None)
            assert alive is owns
        elif what == "release":
            self.expect(lambda: self.queue.release(claim), None)
        else:
            self._lapse(claim)

    def _lapse(self, claim: Claim) -> None:
        past = utcnow() - timedelta(seconds=1)
        with self.stack.db.write() as s:
            if claim.stage == "package":
                job = s.get(JobRow, claim.job_id)
                if job is not None and job.package_lease_owner == claim.owner:
                    job.package_lease_expires_at = past
                return
            for item in s.scalars(select(JobItemRow).where(JobItemRow.job_id == claim.job_id)):
                if item.idx == claim.idx and item.lease_owner == claim.owner:
                    item.lease_expires_at = past

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


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when the host has one: the runs commit thousands of small transactions
    and object writes, and fsyncs to disk would dominate the test's time without testing anything."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="s3-property-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_random_api_sequences_keep_states_credits_and_limits(scratch: Path) -> None:
    class Run(ApiMachine):
        workdir = scratch

    run_state_machine_as_test(
        Run,
        settings=settings(
            max_examples=40,
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
