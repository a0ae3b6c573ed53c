"""Real SAM3 serving fixtures: the tiny model exported once, and the bundled Triton serving it.

The export runs in the model environment (``make model-venv``; ``make test`` builds it) and is cached
in ``.artifacts/``, so only the first run pays for it. Servers are session-scoped and always stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.inference.artifacts import MODEL_VENV, REPO_ROOT, ModelArtifact, ensure_artifact
from server.inference.local_triton import LocalTriton

ARTIFACTS = REPO_ROOT / ".artifacts"


@pytest.fixture(scope="session")
def tiny_artifact() -> ModelArtifact:
    if not (MODEL_VENV / "bin" / "python").exists():
        pytest.fail("the model environment is missing: run `make model-venv` (make test does)")
    return asyncio.run(ensure_artifact(ARTIFACTS, None))


@pytest.fixture(scope="session")
def triton_server(tiny_artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    work = tmp_path_factory.mktemp("triton")
    server = LocalTriton(tiny_artifact.cpu_repository(work / "repository"), work)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def data_dir_with_tiny_model(tmp_path: Path, tiny_artifact: ModelArtifact) -> Path:
    """A fresh data dir whose model cache already holds the tiny export (the export is not repeated)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / tiny_artifact.root.name).symlink_to(tiny_artifact.root)
    return tmp_path
