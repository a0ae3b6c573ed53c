"""The root of the settings: the data dir and one section per component.

A component is given its section (``server.config.sections``), not the whole; :class:`Settings` is
what the composition root holds, with the few values that combine sections.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server import settings_env
from server.config.sections import (
    AuthConfig,
    CreditsConfig,
    DatabaseConfig,
    GatewayConfig,
    GrpcConfig,
    HttpConfig,
    IdempotencyConfig,
    InferenceConfig,
    JobLimits,
    ObservabilityConfig,
    OperatorConfig,
    PhotoLimits,
    QueueConfig,
    RateLimitsConfig,
    S3Config,
    StorageConfig,
    SweeperConfig,
    WebhookConfig,
)
from server.settings_env import Section


@dataclass(frozen=True)
class Settings(Section):
    """Every knob of the service. Each setting is read from ``S3_<NAME>`` (``server.settings_env``);
    docs/settings.md is generated from these declarations (``scripts/gen_settings_doc.py``)."""

    data_dir: Path = Path(".s3data")
    """SQLite file, local objects and generated secrets."""
    http: HttpConfig = field(default_factory=HttpConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    idempotency: IdempotencyConfig = field(default_factory=IdempotencyConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    s3: S3Config = field(default_factory=S3Config)
    photos: PhotoLimits = field(default_factory=PhotoLimits)
    jobs: JobLimits = field(default_factory=JobLimits)
    credits: CreditsConfig = field(default_factory=CreditsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    sweeper: SweeperConfig = field(default_factory=SweeperConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)

    @property
    def shared_database(self) -> bool:
        """A database other processes may use too (anything but the embedded SQLite file)."""
        return not self.effective_database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "s3.db"

    @property
    def effective_database_url(self) -> str:
        """``S3_DATABASE_URL``, or the SQLite file in the data dir."""
        return self.database.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def effective_public_base_url(self) -> str:
        """Base of local presigned URLs: ``S3_PUBLIC_BASE_URL``, or the shim's own address."""
        return (self.storage.public_base_url or f"http://{self.http.host}:{self.http.port}").rstrip("/")

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``S3_*`` variables (``server.settings_env``: each setting from its
        variable, parsed by its type); invalid values raise :class:`SettingsError`."""
        settings = settings_env.read(cls, os.environ if env is None else env)
        settings.check()
        return settings

    def changed(self, **values: Any) -> Settings:
        """These settings with some changed, by name (``lease_s=1.0``, ``http_port=0``)."""
        return settings_env.changed(self, **values)

    def check(self) -> None:
        """What the field types alone cannot say: each section's own ``check``."""
        for declared in dataclasses.fields(self):
            section = getattr(self, declared.name)
            if isinstance(section, Section):
                section.check()
