"""The tiny SAM3 through a real Triton: same instances as in-process, selection in the graph, error wrapping."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tokenizers import Tokenizer

from server.errors import InferenceUnavailable
from server.inference import sam3_core
from server.inference.artifacts import ModelArtifact
from server.inference.graph_sessions import OnnxRunners
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
        assert wall, "the tiny model keeps its top-K queries (score threshold 0): instances expected"
        assert [i.number for i in wall] == list(range(1, len(wall) + 1))
        assert all(a.score >= b.score for a, b in itertools.pairwise(wall))
        assert wall[0].mask.shape == (32, 32) and wall[0].mask.dtype == np.uint8


def _detections(url: str, square: np.ndarray, phrases: list[str], threshold: float) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(url)
    try:
        inputs = [
            grpcclient.InferInput("image", list(square.shape), "UINT8"),
            grpcclient.InferInput("phrases", [len(phrases)], "BYTES"),
            grpcclient.InferInput("score_threshold", [1], "FP32"),
        ]
        inputs[0].set_data_from_numpy(square)
        inputs[1].set_data_from_numpy(np.array([p.encode() for p in phrases], dtype=np.object_))
        inputs[2].set_data_from_numpy(np.array([threshold], np.float32))
        result = client.infer("sam3", inputs)
        return {name: result.as_numpy(name) for name in sam3_core.DETECTION_OUTPUTS}
    finally:
        client.close()


def test_selection_happens_in_the_graph_and_matches_in_process(
    triton_server: LocalTriton, tiny_artifact: ModelArtifact
) -> None:
    # Random weights score near 0.25: thresholds around there admit some queries and refuse others.
    size = tiny_artifact.geometry.image_size
    square = sam3_core.resize_square(photo(5, (200, 150)), size)
    phrases = ["wall", "floor", "door", "window"]
    local = OnnxRunners(tiny_artifact.onnx_files())
    tokenizer = Tokenizer.from_file(str(tiny_artifact.tokenizer_json))
    admitted = []
    for threshold in (0.0, 0.24, 0.25, 0.26, 1.0):
        got = _detections(triton_server.url, square, phrases, threshold)
        mine = sam3_core.run_sam3(
            square,
            phrases,
            runners=local,
            tokenizer=tokenizer,
            cache=sam3_core.TextFeatureCache(),
            score_threshold=threshold,
            phrases_per_call=3,
        )
        assert got["phrase_index"].tolist() == mine.phrase_index.tolist()
        assert got["query_index"].tolist() == mine.query_index.tolist()
        np.testing.assert_allclose(got["scores"], mine.scores, atol=1e-6)
        assert np.abs(got["masks"].astype(int) - mine.masks.astype(int)).max(initial=0) <= 1
        assert np.all(got["scores"] >= threshold) and got["masks"].dtype == np.uint8
        per_phrase = np.bincount(got["phrase_index"], minlength=len(phrases))
        assert per_phrase.max(initial=0) <= tiny_artifact.max_detections  # the top-K cap, in the graph
        admitted.append(len(got["scores"]))
    assert admitted[0] == len(phrases) * tiny_artifact.max_detections and admitted[-1] == 0
    assert admitted == sorted(admitted, reverse=True) and len(set(admitted)) > 2


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
