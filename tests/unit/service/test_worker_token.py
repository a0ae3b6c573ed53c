"""The worker token: its own credential, strong, compared in full, and every WorkerService method
guarded by it before its message is decoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from protos.s3.v1 import worker_pb2
from server.config import Settings, resolve_secrets
from server.errors import Forbidden
from server.grpc_api.guards import METHOD_RULES, RequestGuard
from server.service.worker_auth import WorkerAuth
from server.settings_env import SettingsError

TOKEN = "worker-" + "w" * 40
SERVICE = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]


class _Services:
    """The one part of ``Services`` the worker rule reads."""

    def __init__(self, token: str | None) -> None:
        self.worker_auth = WorkerAuth(token)


def test_every_worker_method_needs_the_worker_token() -> None:
    paths = {f"/{SERVICE.full_name}/{m.name}" for m in SERVICE.methods}
    assert paths and all(METHOD_RULES[p].credential == "worker" for p in paths)


@pytest.mark.parametrize("presented", [None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "callback-" + "c" * 40])
def test_anything_but_the_token_is_refused_before_decoding(presented: str | None) -> None:
    guard = RequestGuard(_Services(TOKEN))  # type: ignore[arg-type]
    rule = guard.rule(f"/{SERVICE.full_name}/Lease")
    metadata = [] if presented is None else [("x-worker-token", presented)]
    assert isinstance(guard.refusal(rule, metadata), Forbidden)
    assert guard.refusal(rule, [("x-worker-token", TOKEN)]) is None


def test_without_a_configured_token_the_worker_api_is_off() -> None:
    auth = WorkerAuth(None)
    assert not auth.enabled
    with pytest.raises(Forbidden, match="S3_WORKER_TOKEN is unset"):
        auth.authenticate(TOKEN)


def test_the_token_is_read_from_the_environment_and_must_be_strong_and_its_own(tmp_path: Path) -> None:
    base = Settings.from_env({"S3_DATA_DIR": str(tmp_path), "S3_WORKER_TOKEN": TOKEN})
    assert resolve_secrets(base).auth.worker_token == TOKEN
    with pytest.raises(SettingsError, match="at least 32"):
        resolve_secrets(base.changed(worker_token="short"))
    secret = "callback-" + "c" * 40
    with pytest.raises(SettingsError, match="differ from S3_CALLBACK_SECRET"):
        resolve_secrets(base.changed(worker_token=secret, callback_secret=secret))
