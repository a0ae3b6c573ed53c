"""A setting the service refuses ends each entry point with one line naming the variable and exit
code 2, not a traceback: the entry points run as real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.inference.artifacts import REPO_ROOT
from stack.startup import CONFIG_ERROR_EXIT_CODE

GOOD_SECRET = "s" * 40


def _run(module: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    clean.update({"S3_DATA_DIR": str(tmp_path / "data"), "S3_JWT_SECRET": GOOD_SECRET, **env})
    clean["S3_CALLBACK_SECRET"] = env.get("S3_CALLBACK_SECRET", GOOD_SECRET)
    clean["S3_ADMIN_TOKEN"] = env.get("S3_ADMIN_TOKEN", GOOD_SECRET)
    return subprocess.run(
        [sys.executable, "-m", module], cwd=REPO_ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


SECRETS = ("S3_CALLBACK_SECRET", "S3_JWT_SECRET", "S3_ADMIN_TOKEN")


@pytest.mark.parametrize(
    ("module", "variable", "value"),
    [
        ("stack.serve", "S3_CALLBACK_SECRET", "c" * 26),
        ("stack.worker", "S3_CALLBACK_SECRET", "c" * 26),
        ("stack.serve", "S3_JWT_SECRET", "short"),
        ("stack.worker", "S3_LEASE_S", "nan"),
        ("stack.serve", "S3_HTTP_PORT", "eighty"),
        ("stack.serve", "S3_HTTP_HEADER_TIMEOUT_S", "inf"),
        ("stack.serve", "S3_HTTP_MAX_CONNECTIONS", "0"),
    ],
)
def test_a_refused_setting_is_one_line_and_exit_2(tmp_path: Path, module: str, variable: str, value: str) -> None:
    done = _run(module, tmp_path, **{variable: value})
    assert done.returncode == CONFIG_ERROR_EXIT_CODE == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("configuration error: ") and variable in lines[0], lines
    assert "Traceback" not in done.stderr and done.stdout == ""
    if variable in SECRETS:
        assert value not in lines[0]  # a secret is never echoed, not even a refused one


def test_a_short_kept_secret_names_its_file(tmp_path: Path) -> None:
    secrets = tmp_path / "data" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "callback_secret").write_text("x" * 10)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    clean["S3_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "stack.serve"], cwd=REPO_ROOT, env=clean, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"configuration error: {secrets / 'callback_secret'} holds a secret shorter than 32 characters"
    ]
