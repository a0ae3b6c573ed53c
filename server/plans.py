"""Plan limits (contract: Limits and credits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanLimits:
    name: str
    max_concurrency: int
    """Jobs that may be non-terminal at once."""
    rule_slots: int
    """Saved rules at most."""
    max_batch: int
    """Items per job at most."""
    max_stored_bytes: int
    """Bytes the user's live jobs may hold at once (inputs, masks, outputs, sets; a job still waiting
    for its photos counts every upload URL at the upload size limit)."""
    max_live_jobs: int
    """Jobs whose objects are still kept (any status until the sweeper purges them)."""


PLANS: dict[str, PlanLimits] = {
    "free": PlanLimits(
        "free", max_concurrency=1, rule_slots=2, max_batch=10, max_stored_bytes=1 << 30, max_live_jobs=50
    ),
    "pro": PlanLimits(
        "pro", max_concurrency=3, rule_slots=20, max_batch=100, max_stored_bytes=20 << 30, max_live_jobs=1000
    ),
}

DEFAULT_PLAN = "free"


def limits_for(plan: str) -> PlanLimits:
    try:
        return PLANS[plan]
    except KeyError:
        raise ValueError(f"unknown plan {plan!r}") from None
