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

The model and the invariants are ``tests.support.api_machine``, the workers' rules
``tests.support.api_machine_workers``; the clients' rules are here.

Each run (hypothesis example) gets its own fresh SQLite database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, multiple, precondition, rule, run_state_machine_as_test

from server.clock import utcnow
from server.db.tables import JobRow
from server.errors import (
    BatchLimit,
    ConcurrencyLimit,
    InsufficientCredits,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuleSlotLimit,
    S3Error,
    ValidationFailed,
)
from server.plans import limits_for
from server.service.concept_action import actions_from_stored
from server.service.instance_choices import InstanceChoice
from server.service.job_state import TERMINAL
from server.service.ledger import analysis_price
from server.service.sweeper import expire_abandoned_uploads, purge_expired_jobs
from server.storage import keys
from server.work.queue import Claim
from tests.support.api_machine import ANALYZE, CONCEPTS, PHOTOS, USERS, WHICH
from tests.support.api_machine_workers import WorkerRules

pytestmark = pytest.mark.integration


class ClientRules(WorkerRules):
    saved_rules = Bundle("saved_rules")

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
                user,
                name=f"rule {next(self.counter)}",
                preset_id=preset,
                concepts=actions_from_stored(concepts),
                protect=[],
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
        price = analysis_price(len(targets), self.stack.settings.credits.analyze_items_per_credit)
        available = self.stack.services.accounts.me(job.user_id).credits_available
        error: type[S3Error] | None = None
        if job.status != "uploaded":
            error = InvalidState
        elif running or not ok:
            error = ValidationFailed
        elif targets and job.analysis_passes >= self.stack.settings.jobs.max_analyses_per_job:
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
            "concepts": actions_from_stored(CONCEPTS[job.preset_id]),
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
            args.update(instances={99: {"Wall": InstanceChoice(exclude=(1,))}})
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
    class Run(ClientRules):
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
