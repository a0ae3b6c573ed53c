"""What workers do in the random API sequences: remote workers report results by callback, in-process
workers claim, complete, fail, heartbeat and release work from the queue, and leases lapse.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, multiple, precondition, rule
from sqlalchemy import select

from server.clock import utcnow
from server.db.tables import JobItemRow, JobRow
from server.errors import Forbidden, InvalidState, NotFound, S3Error
from server.service.callbacks import ItemReport
from server.service.job_state import TERMINAL
from server.service.settle import FINISHED_ITEM_STATES, ItemOutputs
from server.storage import keys
from server.work.queue import Claim
from tests.support.api_machine import WHICH, ApiMachine


class WorkerRules(ApiMachine):
    claims = Bundle("claims")

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
