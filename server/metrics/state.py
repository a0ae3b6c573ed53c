"""Gauges read from the database at scrape time: queue depth, items of active jobs, jobs.

The database is the queue and the source of truth, so these are counted there on each scrape (a
few grouped counts over indexed columns) instead of being tracked in one process's memory, which
would miss the work of every other server and worker process. For the same reason they come from
one process per database (``S3_STATE_METRICS``, by default the sweeper leader): every replica would
count the same rows, and a sum across replicas would multiply them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import product

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from server.clock import utcnow
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.errors import S3Error
from server.service import job_state
from server.service.item_state import CLAIMABLE_STAGES
from server.service.job_state import TRANSITIONS
from server.wire_enums import ItemStatus

log = logging.getLogger(__name__)

QUEUE_STAGES = (*CLAIMABLE_STAGES, "package")
QUEUE_STATES = ("ready", "leased", "waiting")
ITEM_STATUSES = tuple(ItemStatus)
ACTIVE_JOB_STATES = job_state.ACTIVE
OPEN_JOB_STATES = job_state.OPEN
"""Jobs whose items the queue hands out (``server.work.queue``)."""


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "s3_queue_depth",
            "Work in the queue by stage and state: ready to claim, leased by a worker, or waiting out a retry backoff.",
            labels=("stage", "state"),
        ),
        GaugeMetricFamily(
            "s3_active_job_items", "Items of jobs that are not finished, by item status.", labels=("status",)
        ),
        GaugeMetricFamily("s3_jobs", "Jobs by status.", labels=("status",)),
        GaugeMetricFamily("s3_metrics_database_up", "1 when this scrape could read the database, else 0."),
    )


class StateCollector(Collector):
    def __init__(self, db: Database, *, exports: Callable[[], bool] = lambda: True) -> None:
        self._db = db
        self._exports = exports

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without this the registry would call collect(), and query the database, on register.
        return _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self._exports():
            return  # another process exports them
        queue, items, jobs, up = _families()
        try:
            depth, by_item, by_job = self._read()
        except (S3Error, SQLAlchemyError) as e:
            log.warning("metrics: cannot read the database: %s", e)
            up.add_metric([], 0)
            yield up
            return
        for stage, state in product(QUEUE_STAGES, QUEUE_STATES):
            queue.add_metric([stage, state], depth.get((stage, state), 0))
        for status in sorted({*ITEM_STATUSES, *by_item}):
            items.add_metric([status], by_item.get(status, 0))
        for status in sorted({*TRANSITIONS, *by_job}):
            jobs.add_metric([status], by_job.get(status, 0))
        up.add_metric([], 1)
        yield from (queue, items, jobs, up)

    def _read(self) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        now = utcnow()
        item_state = case(
            (and_(JobItemRow.lease_expires_at.is_not(None), JobItemRow.lease_expires_at >= now), "leased"),
            (JobItemRow.available_at > now, "waiting"),
            else_="ready",
        ).label("state")
        package_lease_live = and_(JobRow.package_lease_expires_at.is_not(None), JobRow.package_lease_expires_at >= now)
        package_state = case(
            # A failed packaging keeps its backoff in the lease expiry, with no owner.
            (and_(package_lease_live, JobRow.package_lease_owner.is_(None)), "waiting"),
            (package_lease_live, "leased"),
            else_="ready",
        ).label("state")
        with self._db.read() as s:
            # Grouped by the label: PostgreSQL cannot match two CASE expressions that carry their
            # own bound parameters, but it can group by an output column's name.
            queued = s.execute(
                select(JobItemRow.stage, item_state, func.count())
                .join(JobRow, JobRow.id == JobItemRow.job_id)
                .where(JobItemRow.stage.in_(CLAIMABLE_STAGES), JobRow.status.in_(OPEN_JOB_STATES))
                .group_by(JobItemRow.stage, item_state)
            ).all()
            depth = {(stage, state): n for stage, state, n in queued}
            packaging = s.execute(
                select(package_state, func.count())
                .where(JobRow.package_state == "pending", JobRow.status == "running")
                .group_by(package_state)
            ).all()
            depth.update({("package", state): n for state, n in packaging})
            by_item = dict(
                s.execute(
                    select(JobItemRow.status, func.count())
                    .join(JobRow, JobRow.id == JobItemRow.job_id)
                    .where(JobRow.status.in_(ACTIVE_JOB_STATES))
                    .group_by(JobItemRow.status)
                ).all()
            )
            by_job = dict(s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
        return depth, by_item, by_job
