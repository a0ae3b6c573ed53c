"""Settings, read once at start-up from the environment into a frozen dataclass.

Units are in the names (``_s``, ``_bytes``). Nothing here opens a connection or touches the disk:
``resolve_secrets`` is the one step that may create files, and the composition root calls it.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

StorageKind = Literal["local", "s3"]
RateLimitStorageKind = Literal["memory", "redis"]
StateMetricsKind = Literal["leader", "on", "off"]
InferenceKind = Literal["triton", "onnx"]
PLAYGROUND_PATH = re.compile(r"^(/[A-Za-z0-9_-]+)+$")
"""Where the web playground may be mounted: one or more plain path segments, no trailing slash."""


class SettingsError(ValueError):
    """An environment variable has a value the service cannot start with."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` in any ``window_s`` seconds (a sliding window). Environment form:
    ``<requests>/<window_s>``, e.g. ``600/60``."""

    requests: int
    window_s: int

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window_s < 1:
            raise ValueError(f"a rate limit needs requests >= 1 and window_s >= 1, got {self}")

    @classmethod
    def parse(cls, name: str, raw: str) -> RateLimit:
        requests, slash, window = raw.partition("/")
        try:
            if not slash:
                raise ValueError(raw)
            return cls(int(requests), int(window))
        except ValueError as err:
            raise SettingsError(
                f"{name} must be <requests>/<window_s> with both >= 1, e.g. 600/60; got {raw!r}"
            ) from err

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_s}"


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field docs name the environment variable that sets it."""

    http_host: str = "127.0.0.1"
    """``S3_HTTP_HOST``: address the REST shim binds to."""
    http_port: int = 8080
    """``S3_HTTP_PORT``."""
    http_header_timeout_s: float = 10.0
    """``S3_HTTP_HEADER_TIMEOUT_S``: a connection without a complete request head by then is closed."""
    http_body_timeout_s: float = 20.0
    """``S3_HTTP_BODY_TIMEOUT_S``: grace for a request body, extended at the minimum rate below."""
    http_body_min_rate_bytes_per_s: int = 1024
    """``S3_HTTP_BODY_MIN_RATE_BYTES_PER_S``: each this many bytes received add a second to the body deadline."""
    http_max_connections: int = 1000
    """``S3_HTTP_MAX_CONNECTIONS``: open connections past which new ones are closed at once."""
    operator_host: str = "127.0.0.1"
    """``S3_OPERATOR_HOST``: address of the shim's operator surface (``/metrics``, detailed ``/health``)."""
    operator_port: int = 9465
    """``S3_OPERATOR_PORT``: its port (0 = off)."""
    grpc_host: str = "127.0.0.1"
    """``S3_GRPC_HOST``: address the gRPC JobService binds to."""
    grpc_port: int = 50051
    """``S3_GRPC_PORT``."""
    grpc_target: str | None = None
    """``S3_GRPC_TARGET``: where the REST shim finds the JobService (default: grpc_host:grpc_port)."""
    metrics_port: int = 9464
    """``S3_METRICS_PORT``: Prometheus ``/metrics`` of the JobService process, on grpc_host (0 = off)."""
    data_dir: Path = Path(".s3data")
    """``S3_DATA_DIR``: SQLite file, local objects and generated secrets."""
    database_url: str | None = None
    """``S3_DATABASE_URL``: overrides the SQLite file in the data dir (``postgresql+psycopg://...``)."""
    jwt_secret: str | None = None
    """``S3_JWT_SECRET``: HS256 key; generated once and kept in the data dir when unset."""
    callback_secret: str | None = None
    """``S3_CALLBACK_SECRET``: shared with remote workers; generated like the JWT secret."""
    admin_token: str | None = None
    """``S3_ADMIN_TOKEN``: operator credential for admin RPCs; generated like the JWT secret."""
    worker_token: str | None = None
    """``S3_WORKER_TOKEN``: the credential of workers behind the WorkerService (``server.worker
    --api``), the same on every replica and worker; never generated: unset = that API is off."""
    jwt_ttl_s: int = 15 * 60
    """``S3_JWT_TTL_S``: lifetime of access tokens (short: a session lives on by refreshing)."""
    refresh_ttl_s: int = 60 * 24 * 3600
    """``S3_REFRESH_TTL_S``: a refresh token unused this long expires; each refresh issues a new one."""
    idempotency_ttl_s: int = 24 * 3600
    """``S3_IDEMPOTENCY_TTL_S``: how long the first answer to an ``Idempotency-Key`` is kept."""
    idempotency_lease_s: float = 60.0
    """``S3_IDEMPOTENCY_LEASE_S``: how long an attempt holds its key before a retry may take it over."""
    stream_token_ttl_s: int = 300
    """``S3_STREAM_TOKEN_TTL_S``: lifetime of a job stream token (``POST /jobs/{id}/stream-token``)."""
    workers: int = 1
    """``S3_WORKERS``: in-process pipeline workers (0 = external workers only)."""
    storage: StorageKind = "local"
    """``S3_STORAGE``: ``local`` (files under the data dir) or ``s3`` (any S3-compatible store)."""
    s3_endpoint_url: str | None = None
    """``S3_S3_ENDPOINT_URL``: S3-compatible endpoint (unset = AWS)."""
    s3_bucket: str = "s3-images"
    """``S3_S3_BUCKET``."""
    s3_region: str = "us-east-1"
    """``S3_S3_REGION``."""
    s3_access_key_id: str | None = None
    """``S3_S3_ACCESS_KEY_ID`` (unset = boto3's default credential chain)."""
    s3_secret_access_key: str | None = None
    """``S3_S3_SECRET_ACCESS_KEY``."""
    public_base_url: str | None = None
    """``S3_PUBLIC_BASE_URL``: base of local presigned URLs (default http://http_host:http_port)."""
    max_upload_bytes: int = 25 * 1024 * 1024
    """``S3_MAX_UPLOAD_BYTES``: largest accepted input object."""
    max_image_pixels: int = 50_000_000
    """``S3_MAX_IMAGE_PIXELS``: largest accepted photo, checked from the header before decoding."""
    upload_url_ttl_s: int = 15 * 60
    """``S3_UPLOAD_URL_TTL_S``: lifetime of presigned upload URLs."""
    download_url_ttl_s: int = 60 * 60
    """``S3_DOWNLOAD_URL_TTL_S``: lifetime of presigned download URLs."""
    upload_deadline_s: int = 60 * 60
    """``S3_UPLOAD_DEADLINE_S``: a job still ``created`` this long after creation is canceled."""
    lease_s: float = 10.0
    """``S3_LEASE_S``: how long a worker owns a claimed item without a heartbeat; a worker that dies
    gives its item back this long after its last heartbeat."""
    heartbeat_s: float | None = None
    """``S3_HEARTBEAT_S``: how often a worker extends its lease; unset = ``lease_s`` / 5, so a few
    missed beats (a database hiccup) do not lose the lease. Must be at most half the lease."""
    max_attempts: int = 3
    """``S3_MAX_ATTEMPTS``: attempts before an item is dead-lettered."""
    claim_batch: int = 1
    """``S3_CLAIM_BATCH``: items a worker leases per claim (one statement however many), settled in
    groups. Raise it where items are cheap (CPU rules, no-op stages); where an item takes a GPU
    second, the items a worker holds but has not started wait on it (and a dead worker takes them
    all down for a lease), so one at a time is the default."""
    retry_backoff_s: float = 2.0
    """``S3_RETRY_BACKOFF_S``: first retry delay; doubles each attempt."""
    inference: InferenceKind = "triton"
    """``S3_INFERENCE``: ``triton`` (gRPC to a Triton server) or ``onnx`` (in-process onnxruntime)."""
    triton_url: str | None = None
    """``S3_TRITON_URL``: host:port of a Triton gRPC endpoint; unset = start the embedded local Triton."""
    sam3_checkpoint: Path | None = None
    """``S3_SAM3_CHECKPOINT``: local SAM3 weights directory; unset = the tiny random-weight model."""
    inference_timeout_s: float = 120.0
    """``S3_INFERENCE_TIMEOUT_S``: a segmentation request's deadline for its photo (vision graph, transfers);
    the request's deadline adds ``inference_phrase_timeout_s`` per phrase sent."""
    inference_phrase_timeout_s: float = 10.0
    """``S3_INFERENCE_PHRASE_TIMEOUT_S``: deadline added per phrase of a segmentation request (text graph
    and decoder), so that a whole palette gets the time it needs (docs/sam3_serving.md)."""
    cors_origins: tuple[str, ...] = ()
    """``S3_CORS_ORIGINS``: comma-separated origins allowed by CORS (the Flutter web build)."""
    max_body_bytes: int = 1024 * 1024
    """``S3_MAX_BODY_BYTES``: largest JSON request body the shim accepts."""
    playground_path: str | None = None
    """``S3_PLAYGROUND_PATH``: serve the web playground at this path (e.g. ``/playground``); unset = off,
    the production default (``make playground`` turns it on)."""
    prefer_wait_max_s: int = 60
    """``S3_PREFER_WAIT_MAX_S``: the longest ``Prefer: wait=N`` the shim honours (seconds)."""
    starting_credits: int = 100
    """``S3_STARTING_CREDITS``: credits granted to a new anonymous user."""
    credits_per_item: int = 1
    """``S3_CREDITS_PER_ITEM``: price of one processed photo."""
    max_streams_per_user: int = 8
    """``S3_MAX_STREAMS_PER_USER``: open job-event streams per user and JobService process (more: 429 STREAM_LIMIT)."""
    stream_max_lifetime_s: float = 3600.0
    """``S3_STREAM_MAX_LIFETIME_S``: a job-event stream ends after this long (the client reconnects);
    it also ends when its token expires."""
    analyze_items_per_credit: int = 4
    """``S3_ANALYZE_ITEMS_PER_CREDIT``: the price of an analysis: one credit per this many photos
    (rounded up) per new concept set; a quarter of execute's price at the default."""
    max_analyses_per_job: int = 5
    """``S3_MAX_ANALYSES_PER_JOB``: analyses one job may request."""
    decode_concurrency: int = 1
    """``S3_DECODE_CONCURRENCY``: full photo decodes confirm-upload runs at once in one process."""
    canceled_retention_s: int = 10 * 60
    """``S3_CANCELED_RETENTION_S``: how long the objects of a canceled or expired job are kept (and
    never before its upload URLs have expired, so none can write the object again)."""
    finished_retention_s: int = 30 * 24 * 3600
    """``S3_FINISHED_RETENTION_S``: how long the objects of a done or failed job are kept."""
    sweep_interval_s: float = 30.0
    """``S3_SWEEP_INTERVAL_S``: how often expired uploads and leases are swept. Every process runs
    the loop; on PostgreSQL only the holder of the sweeper lock sweeps, the others try to take the
    lock each round (``server.db.advisory``)."""
    migrate: bool = True
    """``S3_MIGRATE``: ``on`` (default): bring the schema up to date at start-up, under a lock;
    ``off``: only check, and refuse to start when the schema is behind (``python -m
    server.db.migrate`` migrates)."""
    single_replica: bool = False
    """``S3_SINGLE_REPLICA``: ``on`` allows unset secrets (generated into this data dir) with a
    shared PostgreSQL database, for a deployment of one process; off, they must be set."""
    state_metrics: StateMetricsKind = "leader"
    """``S3_STATE_METRICS``: which process exports the database gauges (``s3_queue_depth``,
    ``s3_active_job_items``, ``s3_jobs``): ``leader`` (the sweeper leader, one per database, so a
    sum over replicas counts once), ``on`` (this process always) or ``off``."""
    log_level: str = "INFO"
    """``S3_LOG_LEVEL``."""
    rate_limits_enabled: bool = True
    """``S3_RATE_LIMITS``: ``on`` (default) or ``off`` (no limits and no RateLimit-* headers)."""
    rate_limit_storage_url: str = "memory://"
    """``S3_RATE_LIMIT_STORAGE_URL``: where the counters live: ``memory://`` (this process only, right
    for one process) or ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS), shared by
    every REST replica."""
    rate_limit_address: RateLimit = RateLimit(6000, 60)
    """``S3_RATE_LIMIT_ADDRESS``: requests per client address (IPv6: per /64), every route."""
    rate_limit_user: RateLimit = RateLimit(1200, 60)
    """``S3_RATE_LIMIT_USER``: requests per signed-in user, on top of the address limit."""
    rate_limit_signup_address: RateLimit = RateLimit(30, 600)
    """``S3_RATE_LIMIT_SIGNUP_ADDRESS``: ``POST /auth/anon`` per client address."""
    rate_limit_signup_global: RateLimit = RateLimit(3000, 60)
    """``S3_RATE_LIMIT_SIGNUP_GLOBAL``: ``POST /auth/anon`` from all addresses together."""
    trusted_proxies: tuple[str, ...] = ()
    """``S3_TRUSTED_PROXIES``: comma-separated addresses or networks (``10.0.0.0/8``) of reverse
    proxies whose ``X-Forwarded-For`` names the client; from any other peer the header is ignored."""

    webhook_allow_networks: tuple[str, ...] = ()
    """``S3_WEBHOOK_ALLOW_NETWORKS``: comma-separated CIDRs (``127.0.0.0/8,10.0.0.0/8``) webhooks may
    reach although they are private, loopback or link-local; by default only public addresses."""
    webhook_timeout_s: float = 10.0
    """``S3_WEBHOOK_TIMEOUT_S``: the longest one delivery attempt may take, connect to last byte."""
    webhook_max_attempts: int = 8
    """``S3_WEBHOOK_MAX_ATTEMPTS``: attempts before an event is marked failed."""
    webhook_backoff_s: float = 5.0
    """``S3_WEBHOOK_BACKOFF_S``: wait after the first failed attempt; doubles each time, at most 1 h."""
    webhook_concurrency: int = 8
    """``S3_WEBHOOK_CONCURRENCY``: deliveries one sender has in flight (to different jobs) at once."""

    @property
    def effective_heartbeat_s(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else heartbeat_for(self.lease_s)

    @property
    def shared_database(self) -> bool:
        """A database other processes may use too (anything but the embedded SQLite file)."""
        return not self.effective_database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "s3.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def effective_grpc_target(self) -> str:
        return self.grpc_target or f"{self.grpc_host}:{self.grpc_port}"

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``S3_*`` variables; unknown values raise :class:`SettingsError`."""
        e = os.environ if env is None else env
        d = cls()

        def text(name: str, default: str | None) -> str | None:
            value = e.get(name)
            return value if value not in (None, "") else default

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError as err:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from err
            if value < minimum:
                raise SettingsError(f"{name} must be >= {minimum}, got {value}")
            return value

        def number(name: str, default: float) -> float:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError as err:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from err
            if not math.isfinite(value) or value <= 0:
                raise SettingsError(f"{name} must be a finite number > 0, got {raw!r}")
            return value

        def rate_limit(name: str, default: RateLimit) -> RateLimit:
            raw = text(name, None)
            return default if raw is None else RateLimit.parse(name, raw)

        def switch(name: str, default: bool) -> bool:
            raw = (text(name, None) or "").lower()
            if not raw:
                return default
            if raw not in ("on", "off"):
                raise SettingsError(f"{name} must be 'on' or 'off', got {raw!r}")
            return raw == "on"

        rate_limit_storage_url = text("S3_RATE_LIMIT_STORAGE_URL", d.rate_limit_storage_url) or ""
        if rate_limit_storage_url.partition("://")[0] not in ("memory", "redis", "rediss"):
            raise SettingsError(
                f"S3_RATE_LIMIT_STORAGE_URL must be memory:// or a redis:// (rediss://) URL, got {rate_limit_storage_url!r}"
            )

        def networks(name: str) -> tuple[str, ...]:
            """Comma-separated addresses or networks (CIDR), each checked."""
            cidrs = tuple(n.strip() for n in (text(name, "") or "").split(",") if n.strip())
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError as err:
                    raise SettingsError(f"{name}: {cidr!r} is not an address or network") from err
            return cidrs

        proxies = networks("S3_TRUSTED_PROXIES")

        storage = text("S3_STORAGE", d.storage)
        if storage not in ("local", "s3"):
            raise SettingsError(f"S3_STORAGE must be 'local' or 's3', got {storage!r}")
        inference = text("S3_INFERENCE", d.inference)
        if inference not in ("triton", "onnx"):
            raise SettingsError(f"S3_INFERENCE must be 'triton' or 'onnx', got {inference!r}")
        lease_s = number("S3_LEASE_S", d.lease_s)
        heartbeat_s = number("S3_HEARTBEAT_S", 0.0) if text("S3_HEARTBEAT_S", None) else None
        if heartbeat_s is not None and heartbeat_s > lease_s / 2:
            raise SettingsError(f"S3_HEARTBEAT_S must be at most half of S3_LEASE_S ({lease_s}), got {heartbeat_s}")
        state_metrics = text("S3_STATE_METRICS", d.state_metrics)
        if state_metrics not in ("leader", "on", "off"):
            raise SettingsError(f"S3_STATE_METRICS must be 'leader', 'on' or 'off', got {state_metrics!r}")
        checkpoint = text("S3_SAM3_CHECKPOINT", None)
        playground = text("S3_PLAYGROUND_PATH", None)
        if playground is not None and not PLAYGROUND_PATH.match(playground):
            raise SettingsError(f"S3_PLAYGROUND_PATH must look like /playground, got {playground!r}")
        origins = text("S3_CORS_ORIGINS", "") or ""
        return cls(
            http_host=text("S3_HTTP_HOST", d.http_host) or d.http_host,
            http_port=integer("S3_HTTP_PORT", d.http_port),
            http_header_timeout_s=number("S3_HTTP_HEADER_TIMEOUT_S", d.http_header_timeout_s),
            http_body_timeout_s=number("S3_HTTP_BODY_TIMEOUT_S", d.http_body_timeout_s),
            http_body_min_rate_bytes_per_s=integer(
                "S3_HTTP_BODY_MIN_RATE_BYTES_PER_S", d.http_body_min_rate_bytes_per_s, minimum=1
            ),
            http_max_connections=integer("S3_HTTP_MAX_CONNECTIONS", d.http_max_connections, minimum=1),
            operator_host=text("S3_OPERATOR_HOST", d.operator_host) or d.operator_host,
            operator_port=integer("S3_OPERATOR_PORT", d.operator_port),
            grpc_host=text("S3_GRPC_HOST", d.grpc_host) or d.grpc_host,
            grpc_port=integer("S3_GRPC_PORT", d.grpc_port),
            grpc_target=text("S3_GRPC_TARGET", None),
            metrics_port=integer("S3_METRICS_PORT", d.metrics_port),
            data_dir=Path(text("S3_DATA_DIR", str(d.data_dir)) or d.data_dir),
            database_url=text("S3_DATABASE_URL", None),
            jwt_secret=text("S3_JWT_SECRET", None),
            callback_secret=text("S3_CALLBACK_SECRET", None),
            admin_token=text("S3_ADMIN_TOKEN", None),
            worker_token=text("S3_WORKER_TOKEN", None),
            jwt_ttl_s=integer("S3_JWT_TTL_S", d.jwt_ttl_s, minimum=1),
            refresh_ttl_s=integer("S3_REFRESH_TTL_S", d.refresh_ttl_s, minimum=1),
            idempotency_ttl_s=integer("S3_IDEMPOTENCY_TTL_S", d.idempotency_ttl_s, minimum=1),
            idempotency_lease_s=number("S3_IDEMPOTENCY_LEASE_S", d.idempotency_lease_s),
            stream_token_ttl_s=integer("S3_STREAM_TOKEN_TTL_S", d.stream_token_ttl_s, minimum=1),
            workers=integer("S3_WORKERS", d.workers),
            storage=storage,  # type: ignore[arg-type]
            s3_endpoint_url=text("S3_S3_ENDPOINT_URL", None),
            s3_bucket=text("S3_S3_BUCKET", d.s3_bucket) or d.s3_bucket,
            s3_region=text("S3_S3_REGION", d.s3_region) or d.s3_region,
            s3_access_key_id=text("S3_S3_ACCESS_KEY_ID", None),
            s3_secret_access_key=text("S3_S3_SECRET_ACCESS_KEY", None),
            public_base_url=text("S3_PUBLIC_BASE_URL", None),
            max_upload_bytes=integer("S3_MAX_UPLOAD_BYTES", d.max_upload_bytes, minimum=1),
            max_image_pixels=integer("S3_MAX_IMAGE_PIXELS", d.max_image_pixels, minimum=1),
            upload_url_ttl_s=integer("S3_UPLOAD_URL_TTL_S", d.upload_url_ttl_s, minimum=1),
            download_url_ttl_s=integer("S3_DOWNLOAD_URL_TTL_S", d.download_url_ttl_s, minimum=1),
            upload_deadline_s=integer("S3_UPLOAD_DEADLINE_S", d.upload_deadline_s, minimum=1),
            lease_s=lease_s,
            heartbeat_s=heartbeat_s,
            max_attempts=integer("S3_MAX_ATTEMPTS", d.max_attempts, minimum=1),
            claim_batch=integer("S3_CLAIM_BATCH", d.claim_batch, minimum=1),
            retry_backoff_s=number("S3_RETRY_BACKOFF_S", d.retry_backoff_s),
            inference=inference,  # type: ignore[arg-type]
            triton_url=text("S3_TRITON_URL", None),
            sam3_checkpoint=Path(checkpoint) if checkpoint else None,
            inference_timeout_s=number("S3_INFERENCE_TIMEOUT_S", d.inference_timeout_s),
            inference_phrase_timeout_s=number("S3_INFERENCE_PHRASE_TIMEOUT_S", d.inference_phrase_timeout_s),
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            webhook_allow_networks=networks("S3_WEBHOOK_ALLOW_NETWORKS"),
            webhook_timeout_s=number("S3_WEBHOOK_TIMEOUT_S", d.webhook_timeout_s),
            webhook_max_attempts=integer("S3_WEBHOOK_MAX_ATTEMPTS", d.webhook_max_attempts, minimum=1),
            webhook_backoff_s=number("S3_WEBHOOK_BACKOFF_S", d.webhook_backoff_s),
            webhook_concurrency=integer("S3_WEBHOOK_CONCURRENCY", d.webhook_concurrency, minimum=1),
            max_body_bytes=integer("S3_MAX_BODY_BYTES", d.max_body_bytes, minimum=1),
            playground_path=playground,
            prefer_wait_max_s=integer("S3_PREFER_WAIT_MAX_S", d.prefer_wait_max_s, minimum=0),
            starting_credits=integer("S3_STARTING_CREDITS", d.starting_credits),
            credits_per_item=integer("S3_CREDITS_PER_ITEM", d.credits_per_item, minimum=1),
            max_streams_per_user=integer("S3_MAX_STREAMS_PER_USER", d.max_streams_per_user, minimum=1),
            stream_max_lifetime_s=number("S3_STREAM_MAX_LIFETIME_S", d.stream_max_lifetime_s),
            analyze_items_per_credit=integer("S3_ANALYZE_ITEMS_PER_CREDIT", d.analyze_items_per_credit, minimum=1),
            max_analyses_per_job=integer("S3_MAX_ANALYSES_PER_JOB", d.max_analyses_per_job, minimum=1),
            decode_concurrency=integer("S3_DECODE_CONCURRENCY", d.decode_concurrency, minimum=1),
            canceled_retention_s=integer("S3_CANCELED_RETENTION_S", d.canceled_retention_s),
            finished_retention_s=integer("S3_FINISHED_RETENTION_S", d.finished_retention_s),
            sweep_interval_s=number("S3_SWEEP_INTERVAL_S", d.sweep_interval_s),
            migrate=switch("S3_MIGRATE", d.migrate),
            single_replica=switch("S3_SINGLE_REPLICA", d.single_replica),
            state_metrics=state_metrics,  # type: ignore[arg-type]
            log_level=(text("S3_LOG_LEVEL", d.log_level) or d.log_level).upper(),
            rate_limits_enabled=switch("S3_RATE_LIMITS", d.rate_limits_enabled),
            rate_limit_storage_url=rate_limit_storage_url,
            rate_limit_address=rate_limit("S3_RATE_LIMIT_ADDRESS", d.rate_limit_address),
            rate_limit_user=rate_limit("S3_RATE_LIMIT_USER", d.rate_limit_user),
            rate_limit_signup_address=rate_limit("S3_RATE_LIMIT_SIGNUP_ADDRESS", d.rate_limit_signup_address),
            rate_limit_signup_global=rate_limit("S3_RATE_LIMIT_SIGNUP_GLOBAL", d.rate_limit_signup_global),
            trusted_proxies=proxies,
        )


def heartbeat_for(lease_s: float) -> float:
    """The default heartbeat of a lease: five beats per lease."""
    return lease_s / 5


def _kept_secret(data_dir: Path, name: str) -> str:
    """Read ``data_dir/secrets/name``, creating it (mode 0600, 256 random bits) the first time."""
    folder = data_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value) < 32:
            raise SettingsError(f"{path} holds a secret shorter than 32 characters") from None
        return value
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def resolve_secrets(settings: Settings) -> Settings:
    """Fill unset secrets from the data dir (generated once, then kept) and check their strength.

    A generated secret belongs to one data dir, so with a shared database it would make each
    replica sign tokens the others reject: that is refused unless ``S3_SINGLE_REPLICA=on``.
    """
    resolved = {}
    for field in ("jwt_secret", "callback_secret", "admin_token"):
        value = getattr(settings, field)
        if value is None and settings.shared_database and not settings.single_replica:
            raise SettingsError(
                f"S3_{field.upper()} is unset: with a shared database (S3_DATABASE_URL) every replica must "
                "use the same value, so set it on every process (or S3_SINGLE_REPLICA=on for a single one)"
            )
        if value is None:
            value = _kept_secret(settings.data_dir, field)
        elif len(value) < 32:
            raise SettingsError(f"S3_{field.upper()} must be at least 32 characters")
        resolved[field] = value
    check_worker_token(settings.worker_token, callback_secret=resolved["callback_secret"])
    return replace(settings, **resolved)


def check_worker_token(token: str | None, *, callback_secret: str | None) -> None:
    """A worker token that is set must be strong and its own: a worker holding it may claim any
    work, so it must not be the callback secret (which only reports results)."""
    if token is None:
        return
    if len(token) < 32:
        raise SettingsError("S3_WORKER_TOKEN must be at least 32 characters")
    if callback_secret is not None and hmac.compare_digest(token.encode(), callback_secret.encode()):
        raise SettingsError("S3_WORKER_TOKEN must differ from S3_CALLBACK_SECRET")
