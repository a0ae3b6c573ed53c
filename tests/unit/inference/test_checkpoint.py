"""Where the weights come from: the setting, else the Hugging Face cache's SAM3, else the tiny model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from server.config import Settings
from server.inference import factory
from server.inference.checkpoint import HF_REPO_ID, cached_checkpoint, hub_cache_dir, resolve_checkpoint


def _snapshot(cache: Path, revision: str, *, complete: bool = True) -> Path:
    repo = cache / ("models--" + HF_REPO_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    if complete:
        (snapshot / "model.safetensors").write_bytes(b"weights")
    return snapshot


def test_the_cache_location_follows_the_hub_clients_variables(tmp_path: Path) -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({"HF_HOME": "/b"}) == Path("/b/hub")
    assert hub_cache_dir({"HOME": str(tmp_path)}) == tmp_path / ".cache" / "huggingface" / "hub"


def test_the_revision_named_by_refs_main_wins(tmp_path: Path) -> None:
    old = _snapshot(tmp_path, "aaa")
    current = _snapshot(tmp_path, "bbb")
    os.utime(old, (2e9, 2e9))  # the older revision is the newer folder: refs/main still decides
    (tmp_path / f"models--{HF_REPO_ID.replace('/', '--')}" / "refs").mkdir()
    (tmp_path / f"models--{HF_REPO_ID.replace('/', '--')}" / "refs" / "main").write_text("bbb\n")
    assert cached_checkpoint({"HF_HUB_CACHE": str(tmp_path)}) == current


def test_an_incomplete_snapshot_is_not_used(tmp_path: Path) -> None:
    _snapshot(tmp_path, "partial", complete=False)
    assert cached_checkpoint({"HF_HUB_CACHE": str(tmp_path)}) is None
    done = _snapshot(tmp_path, "done")
    assert cached_checkpoint({"HF_HUB_CACHE": str(tmp_path)}) == done


def test_the_setting_wins_and_no_cache_means_the_tiny_model(tmp_path: Path) -> None:
    _snapshot(tmp_path, "rev")
    env = {"HF_HUB_CACHE": str(tmp_path)}
    assert resolve_checkpoint(Path("/weights"), env) == Path("/weights")
    assert resolve_checkpoint(None, env) == tmp_path / f"models--{HF_REPO_ID.replace('/', '--')}" / "snapshots" / "rev"
    assert resolve_checkpoint(None, {"HF_HUB_CACHE": str(tmp_path / "empty")}) is None


def test_the_factory_exports_the_cached_checkpoint_when_the_setting_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _snapshot(tmp_path / "hub", "rev")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    asked: list[Path | None] = []

    async def fake_ensure(data_dir: Path, checkpoint: Path | None, *, model_venv: Path) -> object:
        asked.append(checkpoint)
        return object()

    monkeypatch.setattr(factory, "ensure_artifact", fake_ensure)
    asyncio.run(factory._artifact(Settings(data_dir=tmp_path / "data"), tmp_path / "venv"))
    asyncio.run(
        factory._artifact(Settings(data_dir=tmp_path / "data").changed(sam3_checkpoint=tmp_path / "w"), tmp_path)
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    asyncio.run(factory._artifact(Settings(data_dir=tmp_path / "data"), tmp_path / "venv"))
    assert asked == [snapshot, tmp_path / "w", None]
