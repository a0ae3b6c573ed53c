"""The service's secrets: taken from the settings, or generated once into the data dir and kept."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from server.config.sections import AuthConfig, DatabaseConfig
from server.settings_env import SettingsError, env_names

if TYPE_CHECKING:
    from server.config.settings import Settings

GENERATED = ("jwt_secret", "callback_secret", "admin_token")
"""The secrets a single-process deployment may leave unset (the worker token never is generated)."""


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
    names, database = env_names(AuthConfig), env_names(DatabaseConfig)
    resolved = {}
    for field in GENERATED:
        value = getattr(settings.auth, field)
        if value is None and settings.shared_database and not settings.database.single_replica:
            raise SettingsError(
                f"{names[field]} is unset: with a shared database ({database['database_url']}) every replica "
                f"must use the same value, so set it on every process (or {database['single_replica']}=on for a "
                "single one)"
            )
        if value is None:
            value = _kept_secret(settings.data_dir, field)
        elif len(value) < 32:
            raise SettingsError(f"{names[field]} must be at least 32 characters")
        resolved[field] = value
    check_worker_token(settings.auth.worker_token, callback_secret=resolved["callback_secret"])
    return replace(settings, auth=replace(settings.auth, **resolved))


def check_worker_token(token: str | None, *, callback_secret: str | None) -> None:
    """A worker token that is set must be strong and its own: a worker holding it may claim any
    work, so it must not be the callback secret (which only reports results)."""
    if token is None:
        return
    names = env_names(AuthConfig)
    if len(token) < 32:
        raise SettingsError(f"{names['worker_token']} must be at least 32 characters")
    if callback_secret is not None and hmac.compare_digest(token.encode(), callback_secret.encode()):
        raise SettingsError(f"{names['worker_token']} must differ from {names['callback_secret']}")
