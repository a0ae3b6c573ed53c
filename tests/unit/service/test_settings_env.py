"""Settings are read from ``S3_<FIELD>`` by their declared types: one declaration per setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest

from server import settings_env
from server.config import RateLimit, Settings
from server.settings_env import AtLeast, SettingsError


def _spelled(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def test_every_field_is_read_from_its_derived_variable() -> None:
    names = settings_env.env_names(Settings)
    assert names["claim_batch"] == "S3_CLAIM_BATCH"
    assert names["s3_endpoint_url"] == "S3_S3_ENDPOINT_URL"
    assert names["rate_limits_enabled"] == "S3_RATE_LIMITS"  # the one declared otherwise
    assert len(set(names.values())) == len(names)
    # Each field's own default, spelled as a variable, reads back as itself: every type has a reader.
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        value = getattr(defaults, field.name)
        if value is None or value == ():
            continue
        read = Settings.from_env({names[field.name]: _spelled(value)})
        assert getattr(read, field.name) == value, field.name


def test_values_are_parsed_and_bounded_by_their_declarations() -> None:
    s = Settings.from_env(
        {"S3_CLAIM_BATCH": "16", "S3_WORKERS": "0", "S3_LEASE_S": "4.5", "S3_MIGRATE": "off", "S3_LOG_LEVEL": "debug"}
    )
    assert (s.claim_batch, s.workers, s.lease_s, s.migrate, s.log_level) == (16, 0, 4.5, False, "DEBUG")
    assert Settings.from_env({"S3_RATE_LIMIT_USER": "5/10"}).rate_limit_user == RateLimit(5, 10)
    assert Settings.from_env({"S3_SAM3_CHECKPOINT": "/m"}).sam3_checkpoint == Path("/m")
    assert Settings.from_env({"S3_CLAIM_BATCH": ""}).claim_batch == Settings().claim_batch  # empty = unset
    for env, message in [
        ({"S3_CLAIM_BATCH": "0"}, "S3_CLAIM_BATCH must be >= 1, got 0"),
        ({"S3_WORKERS": "-1"}, "S3_WORKERS must be >= 0"),
        ({"S3_LEASE_S": "nan"}, "S3_LEASE_S must be a finite number > 0"),
        ({"S3_STORAGE": "ftp"}, "S3_STORAGE must be 'local' or 's3', got 'ftp'"),
        ({"S3_STATE_METRICS": "x"}, "S3_STATE_METRICS must be 'leader', 'on' or 'off'"),
        ({"S3_MIGRATE": "yes"}, "S3_MIGRATE must be 'on' or 'off'"),
        ({"S3_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, "S3_TRUSTED_PROXIES: 'nope' is not an address or network"),
        ({"S3_LEASE_S": "10", "S3_HEARTBEAT_S": "6"}, "S3_HEARTBEAT_S must be at most half of S3_LEASE_S"),
    ]:
        with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
            Settings.from_env(env)


def test_a_field_of_a_type_without_a_reader_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd:
        ok: Annotated[int, AtLeast(1)] = 1
        odd: complex = 0j

    assert settings_env.read(Odd, {"S3_OK": "2"}) == Odd(ok=2)
    with pytest.raises(TypeError, match="S3_ODD"):
        settings_env.read(Odd, {"S3_ODD": "1j"})
