"""The composition root: the one module that builds engines, clients and services from settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from server.config import Settings
from server.db.engine import Database
from server.db.migrate import ensure_current, upgrade
from server.service.accounts import Accounts
from server.service.admin import Admin
from server.service.bundle import Services
from server.service.callbacks import Callbacks
from server.service.health import Health, Probe
from server.service.idempotency import Idempotency
from server.service.jobs import Jobs
from server.service.rules import Rules
from server.service.sessions import Sessions
from server.service.streams import StreamPolicy
from server.service.tokens import TokenService
from server.service.worker_auth import WorkerAuth
from server.storage.local import LocalObjectStore
from server.storage.port import ObjectStore
from server.storage.s3 import S3ObjectStore
from server.storage.signing import UrlSigner

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    """The database, its schema current: migrated here (``S3_MIGRATE=on``, under the migrations
    lock) or checked (``off``: :class:`~server.db.migrate.SchemaNotCurrent` when behind)."""
    db = Database.from_url(settings.effective_database_url)
    try:
        if settings.database.migrate:
            upgrade(db.engine)
        ensure_current(db.engine)
    except BaseException:
        db.dispose()
        raise
    return db


def build_store(settings: Settings) -> ObjectStore:
    """The configured object store, ready to use (root directory or bucket created)."""
    if settings.storage.kind == "s3":
        s3 = S3ObjectStore.from_settings(settings)
        s3.ensure_bucket()
        return s3
    if settings.auth.jwt_secret is None:
        raise ValueError("resolve secrets before building the local store (it signs URLs)")
    local = LocalObjectStore(
        settings.objects_dir,
        signer=UrlSigner.from_master_secret(settings.auth.jwt_secret),
        public_base_url=settings.effective_public_base_url,
        max_upload_bytes=settings.photos.max_upload_bytes,
    )
    local.ensure_root()
    return local


def _db_probe(db: Database) -> Probe:
    def probe() -> str:
        db.ping()
        return db.engine.dialect.name

    return probe


def _store_probe(store: ObjectStore) -> Probe:
    def probe() -> str:
        store.check()
        return type(store).__name__

    return probe


def build_services(
    settings: Settings,
    db: Database,
    store: ObjectStore,
    *,
    extra_probes: Sequence[tuple[str, Probe]] = (),
    model: str = "none",
    model_meaningful: bool = False,
) -> Services:
    if settings.auth.jwt_secret is None or settings.auth.callback_secret is None or settings.auth.admin_token is None:
        raise ValueError("resolve secrets before building services")
    tokens = TokenService(
        settings.auth.jwt_secret, settings.auth.jwt_ttl_s, stream_ttl_s=settings.auth.stream_token_ttl_s
    )
    sessions = Sessions(db, tokens, settings.auth.refresh_ttl_s)
    health = Health(
        [("database", _db_probe(db)), ("storage", _store_probe(store)), *extra_probes],
        model=model,
        model_meaningful=model_meaningful,
    )
    return Services(
        db=db,
        tokens=tokens,
        accounts=Accounts(
            db,
            sessions,
            settings.credits.starting_credits,
            analyze_items_per_credit=settings.credits.analyze_items_per_credit,
        ),
        rules=Rules(db),
        jobs=Jobs(db, store, settings),
        callbacks=Callbacks(db, settings.auth.callback_secret),
        health=health,
        admin=Admin(db, admin_token=settings.auth.admin_token, max_attempts=settings.queue.max_attempts, store=store),
        sessions=sessions,
        idempotency=Idempotency(db, ttl_s=settings.idempotency.ttl_s, lease_s=settings.idempotency.lease_s),
        streams=StreamPolicy(
            max_per_user=settings.jobs.max_streams_per_user, max_lifetime_s=settings.jobs.stream_max_lifetime_s
        ),
        worker_auth=WorkerAuth(settings.auth.worker_token),
    )
