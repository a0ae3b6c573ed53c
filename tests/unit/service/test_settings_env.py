"""Settings are read from ``S3_<PREFIX><FIELD>`` by their declared types: one declaration per setting,
in the section of the component that is given it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest

from server import settings_env
from server.config import RateLimit, Settings
from server.config.sections import HttpConfig, QueueConfig, WebhookConfig
from server.settings_env import AtLeast, SettingsError


def test_every_setting_is_read_from_its_derived_variable() -> None:
    by_name = {leaf.name: leaf for leaf in settings_env.leaves(Settings)}
    assert by_name["claim_batch"].variable == "S3_CLAIM_BATCH"  # a section without a prefix
    assert by_name["http_port"].path == ("http", "port")  # the section's prefix and the field's name
    assert by_name["s3_endpoint_url"].variable == "S3_S3_ENDPOINT_URL"
    assert by_name["rate_limits"].path == ("rate_limits", "enabled")  # declared otherwise (Env)
    assert by_name["rate_limits"].variable == "S3_RATE_LIMITS"
    assert by_name["data_dir"].path == ("data_dir",)
    variables = [leaf.variable for leaf in by_name.values()]
    assert len(set(variables)) == len(variables) == len(settings_env.leaves(Settings))
    # Each setting's own default, spelled as a variable, reads back as itself: every type has a reader.
    defaults = Settings()
    for leaf in by_name.values():
        value: object = leaf.value_in(defaults)
        if value is None or value == ():
            continue
        read = Settings.from_env({leaf.variable: settings_env.spelled(value)})
        assert leaf.value_in(read) == value, leaf.name
        assert read == defaults, leaf.name  # and lands in its own section, nowhere else


def test_each_component_is_given_its_own_section() -> None:
    s = Settings.from_env({"S3_HTTP_PORT": "9000", "S3_WEBHOOK_TIMEOUT_S": "2.5", "S3_STORAGE": "s3"})
    assert (s.http.port, s.webhooks.timeout_s, s.storage.kind) == (9000, 2.5, "s3")
    assert s.http == HttpConfig(port=9000)
    assert settings_env.env_names(WebhookConfig)["timeout_s"] == "S3_WEBHOOK_TIMEOUT_S"
    assert settings_env.read(QueueConfig, {"S3_LEASE_S": "4"}) == QueueConfig(lease_s=4.0)


def test_changed_sets_settings_by_name_in_their_sections() -> None:
    base = Settings()
    changed = base.changed(lease_s=1.0, http_port=0, rate_limits=False, storage="s3")
    assert (changed.queue.lease_s, changed.http.port, changed.rate_limits.enabled, changed.storage.kind) == (
        1.0,
        0,
        False,
        "s3",
    )
    assert changed.queue.max_attempts == base.queue.max_attempts and changed.grpc == base.grpc
    assert base.queue.lease_s == QueueConfig().lease_s  # the original is left as it was
    with pytest.raises(TypeError, match="no such setting: http_prot, lease"):
        base.changed(http_prot=1, lease=2)


def test_settings_written_as_variables_read_back_as_themselves() -> None:
    changed = Settings().changed(
        lease_s=1.5,
        heartbeat_s=0.5,
        http_port=0,
        rate_limits=False,
        trusted_proxies=("10.0.0.0/8", "::1"),
        rate_limit_user=RateLimit(5, 10),
        sam3_checkpoint=Path("/m"),
        storage="s3",
    )
    env = settings_env.as_env(changed)
    assert env["S3_RATE_LIMITS"] == "off" and env["S3_TRUSTED_PROXIES"] == "10.0.0.0/8,::1"
    assert "S3_TRITON_URL" not in env  # unset stays unset
    assert Settings.from_env(env) == changed


def test_values_are_parsed_and_bounded_by_their_declarations() -> None:
    s = Settings.from_env(
        {"S3_CLAIM_BATCH": "16", "S3_WORKERS": "0", "S3_LEASE_S": "4.5", "S3_MIGRATE": "off", "S3_LOG_LEVEL": "debug"}
    )
    assert (s.queue.claim_batch, s.queue.workers, s.queue.lease_s, s.database.migrate, s.observability.log_level) == (
        16,
        0,
        4.5,
        False,
        "DEBUG",
    )
    assert Settings.from_env({"S3_RATE_LIMIT_USER": "5/10"}).rate_limits.user == RateLimit(5, 10)
    assert Settings.from_env({"S3_SAM3_CHECKPOINT": "/m"}).inference.sam3_checkpoint == Path("/m")
    assert Settings.from_env({"S3_CLAIM_BATCH": ""}).queue.claim_batch == Settings().queue.claim_batch  # empty = unset
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
