"""Settings, read once at start-up from the environment into a frozen dataclass.

Units are in the names (``_s``, ``_bytes``). Nothing here opens a connection or touches the disk:
``resolve_secrets`` is the one step that may create files, and the composition root calls it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

StorageKind = Literal["local", "s3"]
InferenceKind = Literal["triton", "onnx"]


class SettingsError(ValueError):
    """An environment variable has a value the service cannot start with."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field docs name the environment variable that sets it."""

    http_host: str = "127.0.0.1"
    """``S3_HTTP_HOST``: address the REST shim binds to."""
    http_port: int = 8080
    """``S3_HTTP_PORT``."""
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
    jwt_ttl_s: int = 30 * 24 * 3600
    """``S3_JWT_TTL_S``: lifetime of issued tokens."""
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
    lease_s: float = 60.0
    """``S3_LEASE_S``: how long a worker owns a claimed item without a heartbeat."""
    max_attempts: int = 3
    """``S3_MAX_ATTEMPTS``: attempts before an item is dead-lettered."""
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
    starting_credits: int = 100
    """``S3_STARTING_CREDITS``: credits granted to a new anonymous user."""
    credits_per_item: int = 1
    """``S3_CREDITS_PER_ITEM``: price of one processed photo."""
    sweep_interval_s: float = 30.0
    """``S3_SWEEP_INTERVAL_S``: how often expired uploads and leases are swept."""
    log_level: str = "INFO"
    """``S3_LOG_LEVEL``."""

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
            if value <= 0:
                raise SettingsError(f"{name} must be > 0, got {value}")
            return value

        storage = text("S3_STORAGE", d.storage)
        if storage not in ("local", "s3"):
            raise SettingsError(f"S3_STORAGE must be 'local' or 's3', got {storage!r}")
        inference = text("S3_INFERENCE", d.inference)
        if inference not in ("triton", "onnx"):
            raise SettingsError(f"S3_INFERENCE must be 'triton' or 'onnx', got {inference!r}")
        checkpoint = text("S3_SAM3_CHECKPOINT", None)
        origins = text("S3_CORS_ORIGINS", "") or ""
        return cls(
            http_host=text("S3_HTTP_HOST", d.http_host) or d.http_host,
            http_port=integer("S3_HTTP_PORT", d.http_port),
            grpc_host=text("S3_GRPC_HOST", d.grpc_host) or d.grpc_host,
            grpc_port=integer("S3_GRPC_PORT", d.grpc_port),
            grpc_target=text("S3_GRPC_TARGET", None),
            metrics_port=integer("S3_METRICS_PORT", d.metrics_port),
            data_dir=Path(text("S3_DATA_DIR", str(d.data_dir)) or d.data_dir),
            database_url=text("S3_DATABASE_URL", None),
            jwt_secret=text("S3_JWT_SECRET", None),
            callback_secret=text("S3_CALLBACK_SECRET", None),
            admin_token=text("S3_ADMIN_TOKEN", None),
            jwt_ttl_s=integer("S3_JWT_TTL_S", d.jwt_ttl_s, minimum=1),
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
            lease_s=number("S3_LEASE_S", d.lease_s),
            max_attempts=integer("S3_MAX_ATTEMPTS", d.max_attempts, minimum=1),
            retry_backoff_s=number("S3_RETRY_BACKOFF_S", d.retry_backoff_s),
            inference=inference,  # type: ignore[arg-type]
            triton_url=text("S3_TRITON_URL", None),
            sam3_checkpoint=Path(checkpoint) if checkpoint else None,
            inference_timeout_s=number("S3_INFERENCE_TIMEOUT_S", d.inference_timeout_s),
            inference_phrase_timeout_s=number("S3_INFERENCE_PHRASE_TIMEOUT_S", d.inference_phrase_timeout_s),
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            max_body_bytes=integer("S3_MAX_BODY_BYTES", d.max_body_bytes, minimum=1),
            starting_credits=integer("S3_STARTING_CREDITS", d.starting_credits),
            credits_per_item=integer("S3_CREDITS_PER_ITEM", d.credits_per_item, minimum=1),
            sweep_interval_s=number("S3_SWEEP_INTERVAL_S", d.sweep_interval_s),
            log_level=(text("S3_LOG_LEVEL", d.log_level) or d.log_level).upper(),
        )


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
    """Fill unset secrets from the data dir (generated once, then kept) and check their strength."""
    resolved = {}
    for field in ("jwt_secret", "callback_secret", "admin_token"):
        value = getattr(settings, field)
        if value is None:
            value = _kept_secret(settings.data_dir, field)
        elif len(value) < 32:
            raise SettingsError(f"S3_{field.upper()} must be at least 32 characters")
        resolved[field] = value
    return replace(settings, **resolved)
