"""Deadlines that mean something: a request nobody waits for stops doing work inside Triton.

Seen through the ``sam3`` model's log (it names the graph calls run before it stopped). The request
is made slow by many phrases (repeated, so the text graph runs once) and a decoder memory budget of
one phrase per call, so the decoder runs once per phrase.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.artifacts import ModelArtifact
from server.inference.local_triton import LocalTriton
from server.inference.triton import TritonSegmenter
from server.inference.triton_repository import SAM3_MODEL

pytestmark = pytest.mark.integration

PHRASES = ["wall"] * 2000
"""In-process graphs: one tiny decoder call takes about a millisecond, so a slow request needs many."""
FULL_RUN_CALLS = 2 + len(PHRASES)
"""Graph calls of the request answered in full: vision, text (one distinct phrase), a decoder call per phrase."""


@pytest.fixture(scope="module")
def one_phrase_per_call(
    tiny_artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    work = tmp_path_factory.mktemp("triton-deadlines")
    budget = tiny_artifact.decoder_bytes_per_phrase  # exactly one phrase per decoder call
    server = LocalTriton(tiny_artifact.cpu_repository(work / "repository", budget), work)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _graph_calls(log: str) -> int:
    found = re.search(r"after (\d+) graph calls", log)
    assert found, log[-2000:]
    return int(found.group(1))


def _wait_for_log(server: LocalTriton, text: str, since: int, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tail = server.log_path.read_bytes()[since:].decode(errors="replace")
        if text in tail:
            return tail
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the Triton log within {timeout_s}s")


def _segment(server: LocalTriton, *, timeout_s: float) -> tuple[bool, float]:
    """One slow request with a deadline of ``timeout_s``: (answered in time, seconds the client waited)."""

    async def call() -> tuple[bool, float]:
        segmenter = await TritonSegmenter.connect(server.url, timeout_s=timeout_s)
        started = time.monotonic()
        try:
            await segmenter.candidates(np.zeros((64, 64, 3), np.uint8), PHRASES)
            return True, time.monotonic() - started
        except InferenceUnavailable:
            return False, time.monotonic() - started
        finally:
            await segmenter.close()

    return asyncio.run(call())


def test_a_request_whose_client_gave_up_stops_inside_triton(one_phrase_per_call: LocalTriton) -> None:
    server = one_phrase_per_call
    answered, full_s = _segment(server, timeout_s=120)
    assert answered, "with time enough, the request is answered in full"

    mark = len(server.log_path.read_bytes())
    answered, waited = _segment(server, timeout_s=min(0.3, full_s / 4))
    assert not answered and waited < 2.0, "the client stops waiting at its deadline"
    log = _wait_for_log(server, "request abandoned", mark)  # the server is done with it
    assert "cancelled by the client" in log or "past its timeout" in log
    abandoned = _graph_calls(log)
    assert abandoned < FULL_RUN_CALLS / 2, (
        f"{abandoned} of {FULL_RUN_CALLS} graph calls ran for a request nobody waited for"
    )


def test_a_request_past_its_own_timeout_skips_its_remaining_graph_calls(
    one_phrase_per_call: LocalTriton, tiny_artifact: ModelArtifact
) -> None:
    """No gRPC deadline at all: the timeout sent with the request is enough for the model to stop."""
    size = tiny_artifact.geometry.image_size
    client = grpcclient.InferenceServerClient(one_phrase_per_call.url)
    inputs = [
        grpcclient.InferInput("image", [size, size, 3], "UINT8"),
        grpcclient.InferInput("phrases", [len(PHRASES)], "BYTES"),
    ]
    inputs[0].set_data_from_numpy(np.zeros((size, size, 3), np.uint8))
    inputs[1].set_data_from_numpy(np.array([p.encode() for p in PHRASES], dtype=np.object_))
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(SAM3_MODEL, inputs, timeout=300_000)  # microseconds
    finally:
        client.close()
    assert "past its timeout" in caught.value.message()
    assert _graph_calls(caught.value.message()) < FULL_RUN_CALLS / 2
