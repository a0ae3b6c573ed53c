"""Deadlines that mean something: a request nobody waits for stops doing work inside Triton.

Seen through Triton's statistics API (graph inferences run for the request) and its log. The request
is made slow by many phrases (repeated, so the text graph runs once and the decoder runs per chunk).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.local_triton import LocalTriton
from server.inference.triton import TritonSegmenter
from server.inference.triton_repository import SAM3_MODEL, graph_model

pytestmark = pytest.mark.integration

PHRASES = ["wall"] * 400
DECODER = graph_model("decoder")


def _counts(url: str) -> dict[str, int]:
    """Inferences run, per model."""
    client = grpcclient.InferenceServerClient(url)
    try:
        return {m.name: m.inference_count for m in client.get_inference_statistics().model_stats}
    finally:
        client.close()


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


def test_a_request_whose_client_gave_up_stops_inside_triton(triton_server: LocalTriton) -> None:
    before = _counts(triton_server.url)[DECODER]
    assert _segment(triton_server, timeout_s=120)[0]
    full = _counts(triton_server.url)[DECODER] - before
    assert full == len(PHRASES), "answered in full, the request runs the decoder for every phrase"

    mark = len(triton_server.log_path.read_bytes())
    before = _counts(triton_server.url)[DECODER]
    answered, waited = _segment(triton_server, timeout_s=0.3)
    assert not answered and waited < 2.0, "the client stops waiting at its deadline"
    log = _wait_for_log(triton_server, "request abandoned", mark)  # the server is done with it
    assert "cancelled by the client" in log
    abandoned = _counts(triton_server.url)[DECODER] - before
    assert abandoned < full / 2, f"{abandoned} of {full} decoder runs happened for a request nobody waited for"
    time.sleep(0.5)
    assert _counts(triton_server.url)[DECODER] - before == abandoned, "the decoder still runs for it"


def test_a_request_past_its_own_timeout_skips_its_remaining_graph_calls(triton_server: LocalTriton) -> None:
    """No gRPC deadline at all: the timeout sent with the request is enough for the model to stop."""
    client = grpcclient.InferenceServerClient(triton_server.url)
    inputs = [grpcclient.InferInput("image", [64, 64, 3], "UINT8"), grpcclient.InferInput("phrases", [400], "BYTES")]
    inputs[0].set_data_from_numpy(np.zeros((64, 64, 3), np.uint8))
    inputs[1].set_data_from_numpy(np.array([p.encode() for p in PHRASES], dtype=np.object_))
    before = _counts(triton_server.url)[DECODER]
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(SAM3_MODEL, inputs, timeout=300_000)  # microseconds
    finally:
        client.close()
    assert "past its timeout" in caught.value.message()
    assert _counts(triton_server.url)[DECODER] - before < len(PHRASES) / 2
