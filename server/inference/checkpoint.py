"""Where the SAM3 weights come from: ``S3_SAM3_CHECKPOINT``, else a checkpoint already in the Hugging
Face cache (``huggingface-cli download facebook/sam3`` puts it there), else none (the tiny model).

Only the local cache is looked at: nothing is downloaded. The cache is where the Hub client puts it:
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``; inside it
``models--facebook--sam3/snapshots/<revision>/`` with ``refs/main`` naming the current revision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HF_REPO_ID = "facebook/sam3"
"""The published SAM3 checkpoint on the Hugging Face Hub."""


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    return Path(env.get("HOME") or Path.home()) / ".cache" / "huggingface" / "hub"


def _complete(snapshot: Path) -> bool:
    """A snapshot the loader can use: its config and at least one weights file."""
    return (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors"))


def cached_checkpoint(env: Mapping[str, str], repo_id: str = HF_REPO_ID) -> Path | None:
    """The cached snapshot of ``repo_id``: the one ``refs/main`` names, else the newest complete one."""
    repo = hub_cache_dir(env) / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        named = snapshots / ref.read_text().strip()
        if _complete(named):
            return named
    complete = [s for s in snapshots.iterdir() if s.is_dir() and _complete(s)]
    return max(complete, key=lambda s: s.stat().st_mtime) if complete else None


def resolve_checkpoint(configured: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The configured directory when set, else the Hugging Face cache's SAM3, else None (tiny model)."""
    if configured is not None:
        return configured
    return cached_checkpoint(os.environ if env is None else env)
