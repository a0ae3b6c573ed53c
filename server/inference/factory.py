"""Builds the service's Segmenter from Settings: the one place that picks a backend.

- ``S3_TRITON_URL`` set: the ``sam3`` model of that Triton server (nothing exported here).
- ``S3_INFERENCE=onnx``: onnxruntime in this process.
- otherwise: the embedded Triton (bundled binary, CPU repository) on a free loopback port, stopped
  when ``stack`` closes.

The model is ``S3_SAM3_CHECKPOINT`` (or, when unset, a SAM3 checkpoint found in the Hugging Face
cache: ``server.inference.checkpoint``) exported once (cached under the data dir), or without either the
tiny random-weight model, whose masks mean nothing: the logs and ``info.meaningful`` say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

from server.config import Settings
from server.inference.artifacts import MODEL_VENV, ModelArtifact, ensure_artifact
from server.inference.checkpoint import HF_REPO_ID, hub_cache_dir, resolve_checkpoint
from server.inference.local_triton import LocalTriton
from server.inference.onnx_local import OnnxLocalSegmenter
from server.inference.port import Segmenter
from server.inference.triton import TritonSegmenter
from server.inference.triton_runs import reap_earlier_runs

log = logging.getLogger(__name__)


def _warn_if_meaningless(segmenter: Segmenter) -> None:
    if not segmenter.info.meaningful:
        log.warning(
            "SAM3 backend %s uses the tiny random-weight model: masks are NOT meaningful. "
            "Set S3_SAM3_CHECKPOINT to a local SAM3 checkpoint for real segmentation.",
            segmenter.info.name,
        )
    else:
        log.info("SAM3 backend %s ready", segmenter.info.name)


async def _connect(url: str, settings: Settings) -> TritonSegmenter:
    return await TritonSegmenter.connect(
        url,
        timeout_s=settings.inference.inference_timeout_s,
        phrase_timeout_s=settings.inference.inference_phrase_timeout_s,
    )


async def _artifact(settings: Settings, model_venv: Path) -> ModelArtifact:
    checkpoint = resolve_checkpoint(settings.inference.sam3_checkpoint)
    if checkpoint is None:
        log.warning(
            "S3_SAM3_CHECKPOINT is unset and no %s checkpoint is in the Hugging Face cache (%s): "
            "using the tiny random-weight SAM3 (masks are not meaningful)",
            HF_REPO_ID,
            hub_cache_dir(os.environ),
        )
    elif settings.inference.sam3_checkpoint is None:
        log.info("S3_SAM3_CHECKPOINT is unset: using the SAM3 checkpoint in the Hugging Face cache, %s", checkpoint)
    return await ensure_artifact(settings.data_dir, checkpoint, model_venv=model_venv)


async def build_segmenter(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    *,
    model_venv: Path = MODEL_VENV,
) -> Segmenter:
    """A ready Segmenter for ``settings``; whatever it started is stopped when ``stack`` closes."""
    segmenter: Segmenter
    if settings.inference.triton_url:
        segmenter = await _connect(settings.inference.triton_url, settings)
        stack.push_async_callback(segmenter.close)
    elif settings.inference.kind == "onnx":
        artifact = await _artifact(settings, model_venv)
        segmenter = OnnxLocalSegmenter(artifact)
        stack.push_async_callback(segmenter.close)
    else:
        artifact = await _artifact(settings, model_venv)
        # One folder per process: a worker process beside the service starts its own server.
        # A crashed earlier service may have left its server's stubs running (gigabytes each at full size).
        await asyncio.to_thread(reap_earlier_runs, settings.data_dir / "triton")
        work = settings.data_dir / "triton" / f"run-{os.getpid()}"
        repository = artifact.cpu_repository(work / "repository")
        stack.callback(shutil.rmtree, repository, ignore_errors=True)
        triton = LocalTriton(repository, work, model_venv=model_venv, max_photo_pixels=settings.photos.max_image_pixels)
        await asyncio.to_thread(triton.start)
        stack.push_async_callback(asyncio.to_thread, triton.stop)
        segmenter = await _connect(triton.url, settings)
        stack.push_async_callback(segmenter.close)
    _warn_if_meaningless(segmenter)
    return segmenter
