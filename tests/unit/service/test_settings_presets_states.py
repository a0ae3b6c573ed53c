"""Settings parsing and secrets, the preset catalogue, the job state machine, the error tables."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from applier.params import validate_action
from server.config import Settings, SettingsError, resolve_secrets
from server.db.engine import create_db_engine
from server.db.migrate import downgrade, upgrade
from server.db.tables import Base, JobRow
from server.errors import ALL_CODES, InvalidState
from server.grpc_api.status import GRPC_STATUS
from server.presets import COMPUTED_PROTECT_LAYERS, PRESETS
from server.service import job_state


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = Settings.from_env({})
    assert (s.http_host, s.http_port, s.grpc_port, s.workers, s.storage) == ("127.0.0.1", 8080, 50051, 1, "local")
    assert s.effective_database_url == "sqlite:///.s3data/s3.db"
    s = Settings.from_env(
        {
            "S3_HTTP_PORT": "9000",
            "S3_DATA_DIR": str(tmp_path),
            "S3_CORS_ORIGINS": "http://a, http://b",
            "S3_WORKERS": "0",
        }
    )
    assert (s.http_port, s.data_dir, s.cors_origins, s.workers) == (9000, tmp_path, ("http://a", "http://b"), 0)


def test_the_inference_deadline_has_a_photo_and_a_phrase_share() -> None:
    s = Settings.from_env({})
    # The whole interior palette (18 phrases) fits the default deadline: 120 s + 18 x 10 s.
    assert (s.inference_timeout_s, s.inference_phrase_timeout_s) == (120.0, 10.0)
    s = Settings.from_env({"S3_INFERENCE_TIMEOUT_S": "30", "S3_INFERENCE_PHRASE_TIMEOUT_S": "2.5"})
    assert (s.inference_timeout_s, s.inference_phrase_timeout_s) == (30.0, 2.5)


@pytest.mark.parametrize(
    "env",
    [
        {"S3_HTTP_PORT": "eighty"},
        {"S3_WORKERS": "-1"},
        {"S3_STORAGE": "ftp"},
        {"S3_INFERENCE": "tpu"},
        {"S3_LEASE_S": "0"},
        {"S3_INFERENCE_PHRASE_TIMEOUT_S": "0"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = resolve_secrets(Settings(data_dir=tmp_path))
    again = resolve_secrets(Settings(data_dir=tmp_path))
    assert first.jwt_secret == again.jwt_secret and first.callback_secret == again.callback_secret
    assert len({first.jwt_secret, first.callback_secret, first.admin_token}) == 3
    mode = os.stat(tmp_path / "secrets" / "jwt_secret").st_mode
    assert stat.S_IMODE(mode) == 0o600
    with pytest.raises(SettingsError):
        resolve_secrets(Settings(data_dir=tmp_path, jwt_secret="too-short"))


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
