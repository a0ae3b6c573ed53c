"""What an installed wheel holds: the SAM3 export and the Triton models' code must be in it, or an
installed service can neither export nor assemble a repository to serve."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from server.inference import torch_repository, triton_repository

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "stack", "server", "applier", "gateway_rest", "protos")


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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    return _wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_export_and_its_command(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in ("__init__.py", "__main__.py", "sam3_export.py"):
        assert f"server/inference/export/{module}" in names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "s3-export-model = server.inference.export.sam3_export:main" in wheel.read(entry_points).decode()
    # Test and demo code stays out of the shipped library.
    assert not any(n.startswith(("scripts/", "tests/")) or n == "applier/synthetic.py" for n in names)


def test_the_wheel_carries_the_processes_and_the_operator_command(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in ("serve.py", "worker.py", "ctl.py", "runtime.py"):
        assert f"stack/{module}" in names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "s3ctl = stack.ctl:main" in wheel.read(entry_points).decode()


def test_the_wheel_carries_the_model_code_where_the_repository_writers_look(wheel: zipfile.ZipFile) -> None:
    # Where the writers copy from, relative to the package root (in a checkout as in site-packages).
    source = triton_repository.SOURCE_ROOT.relative_to(ROOT)
    wanted = [source / triton_repository.SAM3_MODEL / "1" / name for name in triton_repository.SAM3_CODE]
    wanted += [source / "torch_graph" / name for name in torch_repository.TORCH_GRAPH_CODE]
    names = set(wheel.namelist())
    for path in wanted:
        assert path.as_posix() in names, f"{path} is not in the wheel"
        # Links in the source tree (sam3_core.py, graph_sessions.py) arrive as the files they point to.
        assert wheel.read(path.as_posix()) == (ROOT / path).resolve().read_bytes(), path
