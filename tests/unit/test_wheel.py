"""What an installed wheel holds: the SAM3 export must be in it, or an installed service cannot export."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "server", "applier", "gateway_rest", "protos")


def _wheel(tmp_path: Path) -> zipfile.ZipFile:
    """Build the project's wheel from a copy of its sources (the checkout gets no build folders)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    subprocess.run(command, cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_carries_the_export_and_its_command(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    names = set(wheel.namelist())
    for module in ("__init__.py", "__main__.py", "sam3_export.py"):
        assert f"server/inference/export/{module}" in names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "s3-export-model = server.inference.export.sam3_export:main" in wheel.read(entry_points).decode()
    # Test and demo code stays out of the shipped library.
    assert not any(n.startswith(("scripts/", "tests/")) or n == "applier/synthetic.py" for n in names)
