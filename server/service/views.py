"""What the services return: plain frozen dataclasses, free of ORM and transport types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.item_records import StoredInstance, StoredRendition


@dataclass(frozen=True)
class UserView:
    user_id: str
    plan: str
    credits_available: int
    credits_reserved: int
    credits_spent: int
    active_jobs: int
    max_concurrency: int
    rule_slots_used: int
    rule_slots_max: int
    max_batch: int
    stored_bytes: int
    """Bytes held by the user's live jobs (``server.service.quotas``)."""
    stored_bytes_max: int
    live_jobs: int
    live_jobs_max: int
    analyze_items_per_credit: int
    """The analysis price: one credit per this many photos (rounded up) per new concept set."""


@dataclass(frozen=True)
class RuleView:
    rule_id: str
    name: str
    preset_id: str
    concepts: dict[str, dict[str, Any]]
    protect: list[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobItemView:
    idx: int
    status: str
    input_key: str
    output_key: str | None
    preview_key: str | None
    instances: tuple[StoredInstance, ...]
    renditions: tuple[StoredRendition, ...]
    protect_check: dict[str, Any] | None
    error: str | None
    attempts: int
    analysis: str
    """none | pending | done | failed: whether this item's instances are known."""


@dataclass(frozen=True)
class JobView:
    job_id: str
    user_id: str
    status: str
    preset_id: str
    rule_id: str | None
    total_items: int
    done_items: int
    failed_items: int
    cost_per_item: int
    credits_reserved: int
    credits_spent: int
    analyzed_concepts: list[str]
    set_key: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    upload_deadline_at: datetime
    items: tuple[JobItemView, ...] | None
    """None in listings, where items are left out."""
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    webhook_secret: str | None = None
    """Only in the answer to execute, which chose it; never shown again."""

    @property
    def progress(self) -> float:
        return (self.done_items + self.failed_items) / self.total_items if self.total_items else 0.0


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    next_page_token: str
