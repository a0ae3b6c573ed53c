"""The settings sections: one frozen dataclass per component, holding what that component is given.

Each field is one setting, read from ``S3_<ENV_PREFIX><FIELD>`` (``server.settings_env``); its
attribute docstring is its description in docs/settings.md (``scripts/gen_settings_doc.py``).
Units are in the names (``_s``, ``_bytes``). Checks that the field types alone cannot say are each
section's ``check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from server.settings_env import AtLeast, Env, Networks, Section, SettingsError, Upper, env_names

StorageKind = Literal["local", "s3"]
StateMetricsKind = Literal["leader", "on", "off"]
InferenceKind = Literal["triton", "onnx"]
PLAYGROUND_PATH = re.compile(r"^(/[A-Za-z0-9_-]+)+$")
"""Where the web playground may be mounted: one or more plain path segments, no trailing slash."""


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


def heartbeat_for(lease_s: float) -> float:
    """The default heartbeat of a lease: five beats per lease."""
    return lease_s / 5


@dataclass(frozen=True)
class HttpConfig(Section):
    """The REST shim's listener."""

    ENV_PREFIX = "http_"
    host: str = "127.0.0.1"
    """Address the REST shim binds to."""
    port: int = 8080
    header_timeout_s: float = 10.0
    """A connection without a complete request head by then is closed."""
    body_timeout_s: float = 20.0
    """Grace for a request body, extended at the minimum rate below."""
    body_min_rate_bytes_per_s: Annotated[int, AtLeast(1)] = 1024
    """Each this many bytes received add a second to the body deadline."""
    max_connections: Annotated[int, AtLeast(1)] = 1000
    """Open connections past which new ones are closed at once."""


@dataclass(frozen=True)
class OperatorConfig(Section):
    """The shim's operator surface."""

    ENV_PREFIX = "operator_"
    host: str = "127.0.0.1"
    """Address of the shim's operator surface (``/metrics``, detailed ``/health``)."""
    port: int = 9465
    """Its port (0 = off)."""


@dataclass(frozen=True)
class GrpcConfig(Section):
    """The gRPC JobService."""

    ENV_PREFIX = "grpc_"
    host: str = "127.0.0.1"
    """Address the gRPC JobService binds to."""
    port: int = 50051
    target: str | None = None
    """Where the REST shim finds the JobService (default: grpc_host:grpc_port)."""

    @property
    def effective_target(self) -> str:
        return self.target or f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ObservabilityConfig(Section):
    """Logs and metrics."""

    metrics_port: int = 9464
    """Prometheus ``/metrics`` of the JobService process, on grpc_host (0 = off)."""
    state_metrics: StateMetricsKind = "leader"
    """Which process exports the database gauges (``s3_queue_depth``,
    ``s3_active_job_items``, ``s3_jobs``): ``leader`` (the sweeper leader, one per database, so a
    sum over replicas counts once), ``on`` (this process always) or ``off``."""
    log_level: Annotated[str, Upper()] = "INFO"


@dataclass(frozen=True)
class DatabaseConfig(Section):
    """The database and its schema."""

    database_url: str | None = None
    """Overrides the SQLite file in the data dir (``postgresql+psycopg://...``)."""
    migrate: bool = True
    """``on`` (default): bring the schema up to date at start-up, under a lock;
    ``off``: only check, and refuse to start when the schema is behind (``python -m
    server.db.migrate`` migrates)."""
    single_replica: bool = False
    """``on`` allows unset secrets (generated into this data dir) with a
    shared PostgreSQL database, for a deployment of one process; off, they must be set."""


@dataclass(frozen=True)
class AuthConfig(Section):
    """Secrets and the lifetimes of what they sign."""

    jwt_secret: str | None = None
    """HS256 key; generated once and kept in the data dir when unset."""
    callback_secret: str | None = None
    """Shared with remote workers; generated like the JWT secret."""
    admin_token: str | None = None
    """Operator credential for admin RPCs; generated like the JWT secret."""
    worker_token: str | None = None
    """The credential of workers behind the WorkerService (``stack.worker
    --api``), the same on every replica and worker; never generated: unset = that API is off."""
    jwt_ttl_s: Annotated[int, AtLeast(1)] = 15 * 60
    """Lifetime of access tokens (short: a session lives on by refreshing)."""
    refresh_ttl_s: Annotated[int, AtLeast(1)] = 60 * 24 * 3600
    """A refresh token unused this long expires; each refresh issues a new one."""
    stream_token_ttl_s: Annotated[int, AtLeast(1)] = 300
    """Lifetime of a job stream token (``POST /jobs/{id}/stream-token``)."""


@dataclass(frozen=True)
class IdempotencyConfig(Section):
    """Replays of ``Idempotency-Key`` requests."""

    ENV_PREFIX = "idempotency_"
    ttl_s: Annotated[int, AtLeast(1)] = 24 * 3600
    """How long the first answer to an ``Idempotency-Key`` is kept."""
    lease_s: float = 60.0
    """How long an attempt holds its key before a retry may take it over."""


@dataclass(frozen=True)
class StorageConfig(Section):
    """The object store and its presigned URLs."""

    kind: Annotated[StorageKind, Env("S3_STORAGE")] = "local"
    """``local`` (files under the data dir) or ``s3`` (any S3-compatible store)."""
    public_base_url: str | None = None
    """Base of local presigned URLs (default http://http_host:http_port)."""
    upload_url_ttl_s: Annotated[int, AtLeast(1)] = 15 * 60
    """Lifetime of presigned upload URLs."""
    download_url_ttl_s: Annotated[int, AtLeast(1)] = 60 * 60
    """Lifetime of presigned download URLs."""


@dataclass(frozen=True)
class S3Config(Section):
    """An S3-compatible object store (``S3_STORAGE=s3``)."""

    ENV_PREFIX = "s3_"
    endpoint_url: str | None = None
    """S3-compatible endpoint (unset = AWS)."""
    bucket: str = "s3-images"
    region: str = "us-east-1"
    access_key_id: str | None = None
    """(unset = boto3's default credential chain)."""
    secret_access_key: str | None = None


@dataclass(frozen=True)
class PhotoLimits(Section):
    """What an uploaded photo may be, and how many are decoded at once."""

    max_upload_bytes: Annotated[int, AtLeast(1)] = 25 * 1024 * 1024
    """Largest accepted input object."""
    max_image_pixels: Annotated[int, AtLeast(1)] = 50_000_000
    """Largest accepted photo, checked from the header before decoding."""
    decode_concurrency: Annotated[int, AtLeast(1)] = 1
    """Full photo decodes confirm-upload runs at once in one process."""


@dataclass(frozen=True)
class JobLimits(Section):
    """What one job and one user may hold."""

    upload_deadline_s: Annotated[int, AtLeast(1)] = 60 * 60
    """A job still ``created`` this long after creation is canceled."""
    max_analyses_per_job: Annotated[int, AtLeast(1)] = 5
    """Analyses one job may request."""
    max_streams_per_user: Annotated[int, AtLeast(1)] = 8
    """Open job-event streams per user and JobService process (more: 429 STREAM_LIMIT)."""
    stream_max_lifetime_s: float = 3600.0
    """A job-event stream ends after this long (the client reconnects);
    it also ends when its token expires."""


@dataclass(frozen=True)
class CreditsConfig(Section):
    """Grants and prices."""

    starting_credits: int = 100
    """Credits granted to a new anonymous user."""
    credits_per_item: Annotated[int, AtLeast(1)] = 1
    """Price of one processed photo."""
    analyze_items_per_credit: Annotated[int, AtLeast(1)] = 4
    """The price of an analysis: one credit per this many photos
    (rounded up) per new concept set; a quarter of execute's price at the default."""


@dataclass(frozen=True)
class QueueConfig(Section):
    """The work queue and its workers."""

    workers: int = 1
    """In-process pipeline workers (0 = external workers only)."""
    lease_s: float = 10.0
    """How long a worker owns a claimed item without a heartbeat; a worker that dies
    gives its item back this long after its last heartbeat."""
    heartbeat_s: float | None = None
    """How often a worker extends its lease; unset = ``lease_s`` / 5, so a few
    missed beats (a database hiccup) do not lose the lease. Must be at most half the lease."""
    max_attempts: Annotated[int, AtLeast(1)] = 3
    """Attempts before an item is dead-lettered."""
    claim_batch: Annotated[int, AtLeast(1)] = 1
    """Items a worker leases per claim (one statement however many), settled in
    groups. Raise it where items are cheap (CPU rules, no-op stages); where an item takes a GPU
    second, the items a worker holds but has not started wait on it (and a dead worker takes them
    all down for a lease), so one at a time is the default."""
    retry_backoff_s: float = 2.0
    """First retry delay; doubles each attempt."""

    @property
    def effective_heartbeat_s(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else heartbeat_for(self.lease_s)

    def check(self) -> None:
        names = env_names(QueueConfig)
        if self.heartbeat_s is not None and self.heartbeat_s > self.lease_s / 2:
            raise SettingsError(
                f"{names['heartbeat_s']} must be at most half of {names['lease_s']} ({self.lease_s}), got {self.heartbeat_s}"
            )


@dataclass(frozen=True)
class SweeperConfig(Section):
    """What the sweeper keeps, and how often it runs."""

    canceled_retention_s: int = 10 * 60
    """How long the objects of a canceled or expired job are kept (and
    never before its upload URLs have expired, so none can write the object again)."""
    finished_retention_s: int = 30 * 24 * 3600
    """How long the objects of a done or failed job are kept."""
    sweep_interval_s: float = 30.0
    """How often expired uploads and leases are swept. Every process runs
    the loop; on PostgreSQL only the holder of the sweeper lock sweeps, the others try to take the
    lock each round (``server.db.advisory``)."""


@dataclass(frozen=True)
class InferenceConfig(Section):
    """Where segmentation runs, on which weights, with which deadlines."""

    kind: Annotated[InferenceKind, Env("S3_INFERENCE")] = "triton"
    """``triton`` (gRPC to a Triton server) or ``onnx`` (in-process onnxruntime)."""
    triton_url: str | None = None
    """Host:port of a Triton gRPC endpoint; unset = start the embedded local Triton."""
    sam3_checkpoint: Path | None = None
    """Local SAM3 weights directory; unset = the tiny random-weight model."""
    inference_timeout_s: float = 120.0
    """A segmentation request's deadline for its photo (vision graph, transfers);
    the request's deadline adds ``inference_phrase_timeout_s`` per phrase sent."""
    inference_phrase_timeout_s: float = 10.0
    """Deadline added per phrase of a segmentation request (text graph
    and decoder), so that a whole palette gets the time it needs (docs/sam3_serving.md)."""


@dataclass(frozen=True)
class GatewayConfig(Section):
    """What the REST shim accepts, and from whom."""

    cors_origins: tuple[str, ...] = ()
    """Comma-separated origins allowed by CORS (the Flutter web build)."""
    max_body_bytes: Annotated[int, AtLeast(1)] = 1024 * 1024
    """Largest JSON request body the shim accepts."""
    playground_path: str | None = None
    """Serve the web playground at this path (e.g. ``/playground``); unset = off,
    the production default (``make playground`` turns it on)."""
    prefer_wait_max_s: int = 60
    """The longest ``Prefer: wait=N`` the shim honours (seconds)."""
    trusted_proxies: Annotated[tuple[str, ...], Networks()] = ()
    """Comma-separated addresses or networks (``10.0.0.0/8``) of reverse
    proxies whose ``X-Forwarded-For`` names the client; from any other peer the header is ignored."""

    def check(self) -> None:
        if self.playground_path is not None and not PLAYGROUND_PATH.match(self.playground_path):
            name = env_names(GatewayConfig)["playground_path"]
            raise SettingsError(f"{name} must look like /playground, got {self.playground_path!r}")


@dataclass(frozen=True)
class RateLimitsConfig(Section):
    """The shim's request rate limits."""

    ENV_PREFIX = "rate_limit_"
    enabled: Annotated[bool, Env("S3_RATE_LIMITS")] = True
    """``on`` (default) or ``off`` (no limits and no RateLimit-* headers)."""
    storage_url: str = "memory://"
    """Where the counters live: ``memory://`` (this process only, right
    for one process) or ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS), shared by
    every REST replica."""
    address: RateLimit = RateLimit(6000, 60)
    """Requests per client address (IPv6: per /64), every route."""
    user: RateLimit = RateLimit(1200, 60)
    """Requests per signed-in user, on top of the address limit."""
    signup_address: RateLimit = RateLimit(30, 600)
    """``POST /auth/anon`` per client address."""
    signup_global: RateLimit = RateLimit(3000, 60)
    """``POST /auth/anon`` from all addresses together."""

    def check(self) -> None:
        if self.storage_url.partition("://")[0] not in ("memory", "redis", "rediss"):
            name = env_names(RateLimitsConfig)["storage_url"]
            raise SettingsError(f"{name} must be memory:// or a redis:// (rediss://) URL, got {self.storage_url!r}")


@dataclass(frozen=True)
class WebhookConfig(Section):
    """Delivery of job webhooks."""

    ENV_PREFIX = "webhook_"
    allow_networks: Annotated[tuple[str, ...], Networks()] = ()
    """Comma-separated CIDRs (``127.0.0.0/8,10.0.0.0/8``) webhooks may
    reach although they are private, loopback or link-local; by default only public addresses."""
    timeout_s: float = 10.0
    """The longest one delivery attempt may take, connect to last byte."""
    max_attempts: Annotated[int, AtLeast(1)] = 8
    """Attempts before an event is marked failed."""
    backoff_s: float = 5.0
    """Wait after the first failed attempt; doubles each time, at most 1 h."""
    concurrency: Annotated[int, AtLeast(1)] = 8
    """Deliveries one sender has in flight (to different jobs) at once."""
