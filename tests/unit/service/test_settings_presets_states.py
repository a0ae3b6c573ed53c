"""Settings parsing and secrets, the preset catalogue, the job state machine, the error tables."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from applier.params import validate_action
from server.config import Settings, resolve_secrets
from server.db.engine import create_db_engine
from server.db.migrate import downgrade, upgrade
from server.db.tables import Base, JobRow
from server.errors import ALL_CODES, InvalidState
from server.grpc_api.status import GRPC_STATUS
from server.presets import COMPUTED_PROTECT_LAYERS, PRESETS
from server.service import job_state
from server.settings_env import SettingsError


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = Settings.from_env({})
    assert (s.http.host, s.http.port, s.grpc.port, s.queue.workers, s.storage.kind) == (
        "127.0.0.1",
        8080,
        50051,
        1,
        "local",
    )
    assert s.effective_database_url == "sqlite:///.s3data/s3.db"
    s = Settings.from_env(
        {
            "S3_HTTP_PORT": "9000",
            "S3_DATA_DIR": str(tmp_path),
            "S3_CORS_ORIGINS": "http://a, http://b",
            "S3_WORKERS": "0",
        }
    )
    assert (s.http.port, s.data_dir, s.gateway.cors_origins, s.queue.workers) == (
        9000,
        tmp_path,
        ("http://a", "http://b"),
        0,
    )


def test_the_inference_deadline_has_a_photo_and_a_phrase_share() -> None:
    s = Settings.from_env({})
    # The whole interior palette (18 phrases) fits the default deadline: 120 s + 18 x 10 s.
    assert (s.inference.inference_timeout_s, s.inference.inference_phrase_timeout_s) == (120.0, 10.0)
    s = Settings.from_env({"S3_INFERENCE_TIMEOUT_S": "30", "S3_INFERENCE_PHRASE_TIMEOUT_S": "2.5"})
    assert (s.inference.inference_timeout_s, s.inference.inference_phrase_timeout_s) == (30.0, 2.5)


def test_quota_and_price_settings() -> None:
    s = Settings.from_env({})
    assert (s.credits.analyze_items_per_credit, s.jobs.max_analyses_per_job, s.photos.decode_concurrency) == (4, 5, 1)
    assert (s.sweeper.canceled_retention_s, s.sweeper.finished_retention_s) == (600, 30 * 24 * 3600)
    s = Settings.from_env(
        {
            "S3_ANALYZE_ITEMS_PER_CREDIT": "10",
            "S3_MAX_ANALYSES_PER_JOB": "2",
            "S3_DECODE_CONCURRENCY": "3",
            "S3_CANCELED_RETENTION_S": "0",
            "S3_FINISHED_RETENTION_S": "86400",
        }
    )
    assert (s.credits.analyze_items_per_credit, s.jobs.max_analyses_per_job, s.photos.decode_concurrency) == (10, 2, 3)
    assert (s.sweeper.canceled_retention_s, s.sweeper.finished_retention_s) == (0, 86400)


@pytest.mark.parametrize(
    "env",
    [
        {"S3_HTTP_PORT": "eighty"},
        {"S3_WORKERS": "-1"},
        {"S3_STORAGE": "ftp"},
        {"S3_INFERENCE": "tpu"},
        {"S3_LEASE_S": "0"},
        {"S3_INFERENCE_PHRASE_TIMEOUT_S": "0"},
        {"S3_ANALYZE_ITEMS_PER_CREDIT": "0"},
        {"S3_DECODE_CONCURRENCY": "0"},
        {"S3_CANCELED_RETENTION_S": "-1"},
        {"S3_LEASE_S": "10", "S3_HEARTBEAT_S": "6"},
        {"S3_HEARTBEAT_S": "0"},
        {"S3_MIGRATE": "maybe"},
        {"S3_STATE_METRICS": "all"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = resolve_secrets(Settings(data_dir=tmp_path))
    again = resolve_secrets(Settings(data_dir=tmp_path))
    assert first.auth.jwt_secret == again.auth.jwt_secret and first.auth.callback_secret == again.auth.callback_secret
    assert len({first.auth.jwt_secret, first.auth.callback_secret, first.auth.admin_token}) == 3
    mode = os.stat(tmp_path / "secrets" / "jwt_secret").st_mode
    assert stat.S_IMODE(mode) == 0o600
    with pytest.raises(SettingsError):
        resolve_secrets(Settings(data_dir=tmp_path).changed(jwt_secret="too-short"))


def _roles(s: Settings) -> tuple[bool, bool, str, bool]:
    """Migrate at start-up, a single replica, which process exports the gauges, a shared database."""
    return s.database.migrate, s.database.single_replica, s.observability.state_metrics, s.shared_database


def test_lease_heartbeat_and_start_up_roles() -> None:
    s = Settings.from_env({})
    # A dead worker's item is back within seconds: a short lease kept alive by frequent beats.
    assert (s.queue.lease_s, s.queue.effective_heartbeat_s) == (10.0, 2.0)
    assert _roles(s) == (True, False, "leader", False)
    s = Settings.from_env(
        {
            "S3_LEASE_S": "4",
            "S3_HEARTBEAT_S": "0.5",
            "S3_MIGRATE": "off",
            "S3_SINGLE_REPLICA": "on",
            "S3_STATE_METRICS": "on",
            "S3_DATABASE_URL": "postgresql+psycopg://db/s3",
        }
    )
    assert (s.queue.lease_s, s.queue.effective_heartbeat_s) == (4.0, 0.5)
    assert _roles(s) == (False, True, "on", True)


SHARED = "postgresql+psycopg://db/s3"


@pytest.mark.parametrize("field", ["jwt_secret", "callback_secret", "admin_token"])
def test_a_generated_secret_with_a_shared_database_is_refused(tmp_path: Path, field: str) -> None:
    given = {f: f"{f}-" + "s" * 40 for f in ("jwt_secret", "callback_secret", "admin_token") if f != field}
    with pytest.raises(SettingsError, match=f"^S3_{field.upper()} is unset: with a shared database"):
        resolve_secrets(Settings(data_dir=tmp_path).changed(database_url=SHARED, **given))
    assert not (tmp_path / "secrets").exists()
    # Declared a single replica: generated and kept as on SQLite.
    single = resolve_secrets(Settings(data_dir=tmp_path).changed(database_url=SHARED, single_replica=True, **given))
    assert getattr(single.auth, field) == (tmp_path / "secrets" / field).read_text()
    # Every secret set: nothing to generate, nothing refused.
    every = {**given, field: "set-" + "v" * 40}
    assert (
        resolve_secrets(Settings(data_dir=tmp_path).changed(database_url=SHARED, **every)).auth.jwt_secret
        == every["jwt_secret"]
    )


def test_presets_are_complete_and_their_defaults_valid() -> None:
    assert len(PRESETS["interior"].concepts) == 12 and len(PRESETS["seller"].concepts) == 6
    assert {p.id for p in PRESETS.values() if p.phase == 2} == {"profile", "fashion"}
    for preset in PRESETS.values():
        ids = preset.concept_ids
        assert len(set(ids)) == len(ids)
        for concept in preset.concepts:
            assert concept.prompts and all(p.strip() == p and p for p in concept.prompts)
            validate_action(concept.default_action, concept.default_params)
        assert set(preset.protect_defaults) <= set(ids) | set(COMPUTED_PROTECT_LAYERS)
        template_ids = [t.id for s in preset.output_sets for t in s.templates]
        assert preset.output_sets and all(t.width > 0 and t.height > 0 for s in preset.output_sets for t in s.templates)
        assert len({s.id for s in preset.output_sets}) == len(preset.output_sets), template_ids


def _job(status: str) -> JobRow:
    return JobRow(status=status)


def test_state_machine_allows_only_the_contracts_transitions() -> None:
    allowed = {
        ("created", "uploaded"),
        ("uploaded", "queued"),
        ("queued", "running"),
        ("running", "done"),
        ("running", "failed"),
        *((s, "canceled") for s in ("created", "uploaded", "queued", "running")),
    }
    states = list(job_state.TRANSITIONS)
    for a in states:
        for b in states:
            job = _job(a)
            if (a, b) in allowed:
                job_state.move(job, b)
                assert job.status == b
                assert (job.finished_at is not None) == (b in job_state.TERMINAL)
            else:
                with pytest.raises(InvalidState):
                    job_state.move(job, b)
                assert job.status == a


def test_every_contract_code_has_a_grpc_status() -> None:
    assert set(GRPC_STATUS) == set(ALL_CODES)


def test_migrations_match_the_declared_schema(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    downgrade(engine, "base")
    upgrade(engine)
    engine.dispose()


def test_delivery_settings_are_read_and_checked() -> None:

    s = Settings.from_env(
        {
            "S3_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128",
            "S3_PREFER_WAIT_MAX_S": "5",
            "S3_STREAM_TOKEN_TTL_S": "30",
        }
    )
    assert s.webhooks.allow_networks == ("127.0.0.0/8", "::1/128")
    assert (s.gateway.prefer_wait_max_s, s.auth.stream_token_ttl_s) == (5, 30)
    assert Settings.from_env({}).webhooks.allow_networks == ()
    with pytest.raises(SettingsError, match="S3_WEBHOOK_ALLOW_NETWORKS"):
        Settings.from_env({"S3_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/8,not-a-network"})
