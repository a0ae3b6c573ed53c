"""The rate-limit settings: read once from the environment, refused with a clear message when wrong."""

from __future__ import annotations

import pytest

from server.config import RateLimit, Settings
from server.settings_env import SettingsError


def test_defaults_are_on_in_memory_with_tighter_sign_up() -> None:
    s = Settings.from_env({})
    assert s.rate_limits.enabled and s.rate_limits.storage_url == "memory://" and s.gateway.trusted_proxies == ()
    per_second = {
        name: limit.requests / limit.window_s
        for name, limit in (
            ("address", s.rate_limits.address),
            ("user", s.rate_limits.user),
            ("signup", s.rate_limits.signup_address),
        )
    }
    assert per_second["signup"] < per_second["user"] < per_second["address"], per_second


def test_overrides() -> None:
    s = Settings.from_env(
        {
            "S3_RATE_LIMITS": "off",
            "S3_RATE_LIMIT_STORAGE_URL": "redis://10.0.0.5:6379/2",
            "S3_RATE_LIMIT_ADDRESS": "100/10",
            "S3_RATE_LIMIT_USER": "50/10",
            "S3_RATE_LIMIT_SIGNUP_ADDRESS": "2/3600",
            "S3_RATE_LIMIT_SIGNUP_GLOBAL": "10/1",
            "S3_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1,::1",
        }
    )
    assert not s.rate_limits.enabled and s.rate_limits.storage_url == "redis://10.0.0.5:6379/2"
    assert (s.rate_limits.address, s.rate_limits.user) == (RateLimit(100, 10), RateLimit(50, 10))
    assert (s.rate_limits.signup_address, s.rate_limits.signup_global) == (RateLimit(2, 3600), RateLimit(10, 1))
    assert s.gateway.trusted_proxies == ("10.0.0.0/8", "192.168.1.1", "::1")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("S3_RATE_LIMIT_ADDRESS", "100"),
        ("S3_RATE_LIMIT_ADDRESS", "0/60"),
        ("S3_RATE_LIMIT_USER", "10/0"),
        ("S3_RATE_LIMIT_USER", "ten/60"),
        ("S3_RATE_LIMIT_SIGNUP_ADDRESS", "5 per minute"),
        ("S3_RATE_LIMIT_STORAGE_URL", "memcached://10.0.0.5"),
        ("S3_RATE_LIMIT_STORAGE_URL", "10.0.0.5:6379"),
        ("S3_RATE_LIMITS", "maybe"),
        ("S3_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
