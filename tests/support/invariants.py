"""Money and state invariants, checked straight against the database."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from server.db.engine import Database
from server.db.tables import BillingEventRow, JobItemRow, JobRow, UserRow
from server.service.ledger import analysis_ref, item_ref

ANALYSIS_REF_PREFIX = analysis_ref(0).split(":", 1)[0] + ":"

OPEN_ITEM_STATES = {"pending", "uploaded", "queued", "running"}


def check_invariants(db: Database) -> None:
    """granted = available + reserved + spent for every user, the ledger agrees with the balances,
    every job's reservation equals the price of its unfinished items plus the analysis under way,
    and an analysis reserves, spends and refunds through its own ledger refs, once each."""
    with db.read() as s:
        users = list(s.scalars(select(UserRow)))
        events = list(s.scalars(select(BillingEventRow)))
        jobs = list(s.scalars(select(JobRow)))
        items = list(s.scalars(select(JobItemRow)))
    by_user: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        by_user[e.user_id][e.type] += e.amount
    for u in users:
        assert u.credits_granted == u.credits_available + u.credits_reserved + u.credits_spent, u.id
        assert min(u.credits_available, u.credits_reserved, u.credits_spent) >= 0, u.id
        ledger = by_user[u.id]
        assert ledger["grant"] + ledger["admin_grant"] == u.credits_granted, u.id
        assert ledger["spend"] == u.credits_spent, u.id
        assert ledger["reserve"] - ledger["spend"] - ledger["refund"] == u.credits_reserved, u.id
    items_by_job: dict[str, list[JobItemRow]] = defaultdict(list)
    for i in items:
        items_by_job[i.job_id].append(i)
    reserved_by_user: dict[str, int] = defaultdict(int)
    for j in jobs:
        its = items_by_job[j.id]
        assert len(its) == j.total_items, j.id
        open_items = sum(1 for i in its if i.status in OPEN_ITEM_STATES)
        done = sum(1 for i in its if i.status == "done")
        failed = sum(1 for i in its if i.status == "failed")
        assert j.credits_reserved == open_items * j.cost_per_item, (j.id, j.status)
        assert j.credits_spent == done * j.cost_per_item, j.id
        assert (j.done_items, j.failed_items) == (done, failed), j.id
        if j.status in ("done", "failed", "canceled"):
            assert open_items == 0, (j.id, j.status)
        if j.status == "done":
            assert done > 0 and (j.set_key or (j.error or "").startswith("packaging failed")), j.id
        if j.status == "failed":
            assert done == 0, j.id
        assert j.stored_bytes >= 0, j.id
        if j.purged_at is not None:
            assert j.status in ("done", "failed", "canceled") and j.stored_bytes == 0, (j.id, j.status)
        assert j.analysis_credits_spent <= sum(
            e.amount
            for e in events
            if e.job_id == j.id and e.type == "reserve" and e.ref.startswith(ANALYSIS_REF_PREFIX)
        ), j.id
        if not any(i.stage == "analyze" for i in its):
            assert j.analysis_credits_reserved == 0, (j.id, "an analysis that is over still holds credits")
        reserved_by_user[j.user_id] += j.credits_reserved + j.analysis_credits_reserved
    for u in users:
        assert reserved_by_user[u.id] == u.credits_reserved, u.id
    _check_requeue_rounds(events, items)
    _check_analyses(events, jobs)


def _check_analyses(events: list[BillingEventRow], jobs: list[JobRow]) -> None:
    """Per job: the analysis refs' reserve - spend - refund is what is still reserved, their spends
    are the job's analysis spend, and no pass is spent or refunded twice."""
    moved: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: set[tuple[str | None, str, str]] = set()
    for e in events:
        if not e.ref.startswith(ANALYSIS_REF_PREFIX):
            continue
        assert (e.job_id, e.type, e.ref) not in seen, (e.job_id, e.type, e.ref)
        seen.add((e.job_id, e.type, e.ref))
        moved[e.job_id][e.type] += e.amount
    for j in jobs:
        m = moved[j.id]
        assert m["reserve"] - m["spend"] - m["refund"] == j.analysis_credits_reserved, j.id
        assert m["spend"] == j.analysis_credits_spent, j.id


def _check_requeue_rounds(events: list[BillingEventRow], items: list[JobItemRow]) -> None:
    """Every operator requeue of an item reserved its credits again under that round's ref, and an
    item is paid for at most once whatever the number of rounds."""
    reserved = {(e.job_id, e.ref) for e in events if e.type == "reserve"}
    spends: dict[tuple[str | None, str], int] = defaultdict(int)
    for e in events:
        if e.type == "spend":
            spends[(e.job_id, e.ref.split("/", 1)[0])] += 1
    for i in items:
        for round_no in range(1, i.requeues + 1):
            assert (i.job_id, item_ref(i.idx, round_no)) in reserved, (i.job_id, i.idx, round_no)
        assert spends[(i.job_id, item_ref(i.idx))] == (1 if i.status == "done" else 0), (i.job_id, i.idx)
