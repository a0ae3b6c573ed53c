"""The tiny SAM3 through a real Triton: same instances as in-process, dynamic batching, error wrapping."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio

from server.errors import InferenceUnavailable
from server.inference.artifacts import ModelArtifact
from server.inference.local_triton import LocalTriton
from server.inference.onnx_local import OnnxLocalSegmenter
from server.inference.port import Instance
from server.inference.triton import TritonSegmenter
from tests.integration.triton.photos import photo

pytestmark = pytest.mark.integration

CONCEPTS = {"Wall": ["wall", "painted wall"], "Floor": ["floor"], "Door": ["door", "wall"]}


def assert_same(a: dict[str, list[Instance]], b: dict[str, list[Instance]]) -> None:
    assert list(a) == list(b)
    for concept in a:
        assert [i.number for i in a[concept]] == [i.number for i in b[concept]], concept
        for x, y in zip(a[concept], b[concept], strict=True):
            assert x.concept == y.concept and x.area == y.area
            assert x.score == pytest.approx(y.score, abs=1e-5)
            assert x.box_xyxy == pytest.approx(y.box_xyxy, abs=1e-3)
            assert np.abs(x.mask.astype(int) - y.mask.astype(int)).max() <= 1


def test_triton_and_in_process_give_the_same_instances(
    triton_server: LocalTriton, tiny_artifact: ModelArtifact
) -> None:
    async def both() -> list[tuple[dict[str, list[Instance]], dict[str, list[Instance]]]]:
        remote = await TritonSegmenter.connect(triton_server.url, timeout_s=30)
        local = OnnxLocalSegmenter(tiny_artifact)
        try:
            assert remote.info.name == "triton:sam3-tiny" and local.info.name == "onnx:sam3-tiny"
            assert not remote.info.meaningful and not local.info.meaningful
            assert await remote.ready()
            pairs = []
            for seed, hw in ((0, (120, 160)), (1, (300, 97)), (2, (64, 64))):
                image = photo(seed, hw)
                pairs.append((await remote.segment(image, CONCEPTS), await local.segment(image, CONCEPTS)))
            return pairs
        finally:
            await remote.close()

    for remote_result, local_result in asyncio.run(both()):
        assert_same(remote_result, local_result)
        wall = remote_result["Wall"]
        assert wall, "the tiny model keeps every query (score threshold 0): instances expected"
        assert [i.number for i in wall] == list(range(1, len(wall) + 1))
        assert all(a.score >= b.score for a, b in itertools.pairwise(wall))
        assert wall[0].mask.shape == (32, 32) and wall[0].mask.dtype == np.uint8


def _vision_counts(url: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics("sam3_vision").model_stats[0]
        return stats.inference_count, stats.execution_count
    finally:
        client.close()


def test_concurrent_requests_are_batched_on_the_vision_graph(
    triton_server: LocalTriton, tiny_artifact: ModelArtifact
) -> None:
    size = tiny_artifact.geometry.image_size
    inferences_before, executions_before = _vision_counts(triton_server.url)

    async def burst() -> list[np.ndarray]:
        client = grpcaio.InferenceServerClient(triton_server.url)
        try:

            async def one(seed: int) -> np.ndarray:
                pixels = np.random.default_rng(seed).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
                given = grpcclient.InferInput("pixel_values", list(pixels.shape), "FP32")
                given.set_data_from_numpy(pixels)
                result = await client.infer("sam3_vision", [given], client_timeout=60)
                fpn0: np.ndarray = result.as_numpy("fpn0")
                return fpn0

            return await asyncio.gather(*(one(seed) for seed in range(16)))
        finally:
            await client.close()

    outputs = asyncio.run(burst())
    assert [o.shape[0] for o in outputs] == [1] * 16
    assert not np.allclose(outputs[0], outputs[1])  # each request got its own slice of the batch back
    inferences_after, executions_after = _vision_counts(triton_server.url)
    inferences, executions = inferences_after - inferences_before, executions_after - executions_before
    assert inferences == 16
    assert executions < inferences, f"{inferences} vision inferences ran as {executions} executions"


def test_concurrent_sam3_requests_each_get_their_own_answer(triton_server: LocalTriton) -> None:
    async def burst() -> list[dict[str, list[Instance]]]:
        segmenter = await TritonSegmenter.connect(triton_server.url, timeout_s=60)
        try:
            images = [photo(100 + i, (96 + 8 * i, 128)) for i in range(8)]
            return await asyncio.gather(*(segmenter.segment(im, {"Wall": ["wall"]}) for im in images))
        finally:
            await segmenter.close()

    results = asyncio.run(burst())
    boxes = [r["Wall"][0].box_xyxy for r in results]
    # Photo heights differ, so boxes (in photo pixels) differ: no answer was swapped or shared.
    assert len(set(boxes)) == len(boxes)


def test_a_stopped_triton_is_inference_unavailable(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    server = LocalTriton(tiny_artifact.cpu_repository(tmp_path / "repository"), tmp_path)

    async def scenario() -> None:
        segmenter = await TritonSegmenter.connect(server.url, timeout_s=5)
        try:
            image = photo(7)
            assert (await segmenter.segment(image, {"Floor": ["floor"]}))["Floor"]
            await asyncio.to_thread(server.stop)
            assert not await segmenter.ready()
            with pytest.raises(InferenceUnavailable) as caught:
                await segmenter.segment(image, {"Floor": ["floor"]})
            assert caught.value.__cause__ is not None
        finally:
            await segmenter.close()

    try:
        server.start()
        asyncio.run(scenario())
    finally:
        server.stop()
    assert server.pid is None
