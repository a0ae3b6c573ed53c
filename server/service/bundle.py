"""The services one transport edge needs, built together by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.db.engine import Database
from server.service.accounts import Accounts
from server.service.admin import Admin
from server.service.callbacks import Callbacks
from server.service.health import Health
from server.service.idempotency import Idempotency
from server.service.jobs import Jobs
from server.service.rules import Rules
from server.service.sessions import Sessions
from server.service.streams import StreamPolicy
from server.service.tokens import TokenService
from server.service.worker_auth import WorkerAuth


@dataclass(frozen=True)
class Services:
    db: Database
    tokens: TokenService
    accounts: Accounts
    rules: Rules
    jobs: Jobs
    callbacks: Callbacks
    health: Health
    admin: Admin
    sessions: Sessions
    idempotency: Idempotency
    streams: StreamPolicy = field(default_factory=StreamPolicy)
    """What job-progress streams may cost (count per user, lifetime, change polling)."""
    worker_auth: WorkerAuth = field(default_factory=lambda: WorkerAuth(None))
    """Who may call the WorkerService (off unless a worker token is configured)."""
