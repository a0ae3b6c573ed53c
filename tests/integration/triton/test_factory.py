"""build_segmenter: the embedded Triton by default, in-process onnxruntime on request, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from server.config import Settings
from server.inference import process_group
from server.inference.artifacts import ModelArtifact
from server.inference.factory import build_segmenter
from server.inference.triton_runs import STUB_PROGRAM, RunRecord, end_run
from tests.integration.triton.crashed import crash_a_service
from tests.integration.triton.photos import photo

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _triton_pid(data_dir: Path) -> int:
    record = RunRecord.read(data_dir / "triton" / f"run-{os.getpid()}" / "tritonserver.pid")
    assert record is not None
    return record.pid


@pytest.mark.parametrize("inference", ["triton", "onnx"])
def test_build_segmenter_without_checkpoint_serves_the_tiny_model(
    inference: str, data_dir_with_tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=data_dir_with_tiny_model).changed(inference=inference, inference_timeout_s=30)

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


def test_a_service_start_reaps_the_stubs_of_a_crashed_earlier_service(
    data_dir_with_tiny_model: Path, tiny_artifact: ModelArtifact
) -> None:
    # An earlier service process of this data dir, killed with its Triton (kill -9 both): stubs remain.
    run = data_dir_with_tiny_model / "triton" / "run-earlier"
    record = crash_a_service(tiny_artifact.cpu_repository(run / "repository"), run)
    pid = record.pid
    try:
        stubs = [p for p in process_group.members(pid) if STUB_PROGRAM in process_group.command_line(p)]
        assert stubs, "the killed server's stubs are still running"
        settings = Settings(data_dir=data_dir_with_tiny_model).changed(inference_timeout_s=30)

        async def restart() -> list[int]:
            async with contextlib.AsyncExitStack() as stack:
                segmenter = await build_segmenter(settings, stack)
                assert await segmenter.ready()
                return process_group.members(pid)

        assert asyncio.run(restart()) == [], "the restart must have ended the earlier run's stubs"
        assert not (run / "tritonserver.pid").exists()
    finally:
        end_run(record)  # only does something if the guard failed
