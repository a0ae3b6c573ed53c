"""build_segmenter: the embedded Triton by default, in-process onnxruntime on request, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from server.config import Settings
from server.inference.factory import build_segmenter
from tests.integration.triton.photos import photo

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _triton_pid(data_dir: Path) -> int:
    return int((data_dir / "triton" / f"run-{os.getpid()}" / "tritonserver.pid").read_text())


@pytest.mark.parametrize("inference", ["triton", "onnx"])
def test_build_segmenter_without_checkpoint_serves_the_tiny_model(
    inference: str, data_dir_with_tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=data_dir_with_tiny_model, inference=inference, inference_timeout_s=30)  # type: ignore[arg-type]

    async def scenario() -> int | None:
        async with contextlib.AsyncExitStack() as stack:
            segmenter = await build_segmenter(settings, stack)
            assert segmenter.info.name == f"{inference}:sam3-tiny"
            assert segmenter.info.meaningful is False
            assert await segmenter.ready()
            found = await segmenter.segment(photo(3), {"Wall": ["wall"], "Floor": ["floor"]})
            assert set(found) == {"Wall", "Floor"} and found["Wall"]
            return _triton_pid(data_dir_with_tiny_model) if inference == "triton" else None

    with caplog.at_level(logging.WARNING):
        pid = asyncio.run(scenario())
    assert "masks are NOT meaningful" in caplog.text
    if inference == "triton":
        assert pid is not None and not _alive(pid), "the embedded Triton must stop with the stack"
        run = data_dir_with_tiny_model / "triton" / f"run-{os.getpid()}"
        assert not (run / "tritonserver.pid").exists() and not (run / "repository").exists()
