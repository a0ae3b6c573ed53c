"""The ``torch`` flavour through the real bundled Triton on this CPU: the three graphs as python-backend
models running PyTorch (fp32 on the CPU, the code path a GPU runs in bf16), chained by ``sam3``
through BLS; same detections as the ONNX graphs, a batching vision model, measured transfers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from bench.gpu_check_serving import vision_counts
from server.inference import sam3_core, torch_graphs
from server.inference import torch_repository as torch_repo
from server.inference import triton_repository as tr
from server.inference.artifacts import ModelArtifact
from server.inference.graph_sessions import OnnxRunners
from server.inference.local_triton import LocalTriton
from server.inference.triton_pbtxt import Batching
from tests.integration.triton.photos import photo
from tests.integration.triton.test_serving import _detections

pytestmark = pytest.mark.integration

PHRASES = ["wall", "floor", "door", "window"]
WAIT_FOR_A_BATCH = Batching(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=500_000)
"""Long enough on two shared cores for concurrent requests to meet in one vision execution."""


@pytest.fixture(scope="module")
def torch_server(tiny_artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    work = tmp_path_factory.mktemp("torch-flavour")
    runtime = torch_repo.TorchRuntime(
        checkpoint=tiny_artifact.root / "checkpoint", device="cpu", precision="float32", stats_dir=work / "stats"
    )
    repository = torch_repo.assemble_torch(
        work / "repository",
        tiny_artifact.geometry,
        tiny_artifact.parameters(),
        runtime,
        tiny_artifact.tokenizer_json,
        vision_batching=WAIT_FOR_A_BATCH,
    )
    server = LocalTriton(repository, work, ready_models=tr.served_models("torch"), startup_timeout_s=300)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _stats_dir(server: LocalTriton) -> Path:
    return server.work_dir / "stats"


def test_torch_graphs_give_the_onnx_graphs_detections(torch_server: LocalTriton, tiny_artifact: ModelArtifact) -> None:
    size = tiny_artifact.geometry.image_size
    local = OnnxRunners(tiny_artifact.onnx_files())
    tokenizer = Tokenizer.from_file(str(tiny_artifact.tokenizer_json))
    square = sam3_core.resize_square(photo(5, (200, 150)), size)
    everything = np.sort(_detections(torch_server.url, square, PHRASES, 0.0)["scores"])
    half = len(everything) // 2  # a threshold between two scores: it admits half of the top-K
    admitted = []
    for threshold in (0.0, float(everything[half - 1] + everything[half]) / 2):
        got = _detections(torch_server.url, square, PHRASES, threshold)
        mine = sam3_core.run_sam3(
            square,
            PHRASES,
            runners=local,
            tokenizer=tokenizer,
            cache=sam3_core.TextFeatureCache(),
            score_threshold=threshold,
            phrases_per_call=len(PHRASES),
        ).arrays()
        keys = {(int(p), int(q)) for p, q in zip(got["phrase_index"], got["query_index"], strict=True)}
        ref = {(int(p), int(q)) for p, q in zip(mine["phrase_index"], mine["query_index"], strict=True)}
        assert keys == ref, f"threshold {threshold}: admitted sets differ"
        order = np.lexsort((got["query_index"], got["phrase_index"]))
        ref_order = np.lexsort((mine["query_index"], mine["phrase_index"]))
        assert np.abs(got["scores"][order] - mine["scores"][ref_order]).max(initial=0) < 1e-4
        assert np.abs(got["boxes"][order] - mine["boxes"][ref_order]).max(initial=0) < 1e-4
        levels = np.abs(got["masks"][order].astype(int) - mine["masks"][ref_order].astype(int))
        assert levels.max(initial=0) <= 1
        admitted.append(len(keys))
    assert admitted[0] == len(PHRASES) * tiny_artifact.max_detections  # threshold 0: the whole top-K
    assert 0 < admitted[1] < admitted[0], "the threshold does not test the selection"


def test_vision_batches_concurrent_photos_and_transfers_are_counted(
    torch_server: LocalTriton, tiny_artifact: ModelArtifact
) -> None:
    size = tiny_artifact.geometry.image_size
    squares = [sam3_core.resize_square(photo(seed, (90, 120)), size) for seed in range(4)]
    before, counters = vision_counts(torch_server.url), torch_graphs.read_stats(_stats_dir(torch_server))
    with ThreadPoolExecutor(len(squares)) as pool:
        answers = list(pool.map(lambda s: _detections(torch_server.url, s, PHRASES, 0.0), squares))
    after, later = vision_counts(torch_server.url), torch_graphs.read_stats(_stats_dir(torch_server))

    photos, executions = after[0] - before[0], after[1] - before[1]
    assert photos == len(squares)
    assert executions < photos, f"{photos} photos in {executions} vision executions: no dynamic batching"
    # Host -> device: each photo once, as uint8 (the features never come back to the host).
    assert later["vision"]["h2d_bytes"] - counters["vision"]["h2d_bytes"] == len(squares) * size * size * 3
    assert later["vision"]["d2h_bytes"] == counters["vision"]["d2h_bytes"] == 0
    # Decoder: in go the prompts (index, features, mask, threshold), out the kept detections only.
    g = tiny_artifact.geometry
    k = len(PHRASES)
    prompts = k * 8 + k * g.text_length * g.text_dim * 4 + k * g.text_length * 8 + 4
    assert later["decoder"]["h2d_bytes"] - counters["decoder"]["h2d_bytes"] == len(squares) * prompts
    kept = sum(len(a["scores"]) for a in answers)
    per_detection = 4 + 4 + 4 + 16 + g.mask_size**2
    assert later["decoder"]["d2h_bytes"] - counters["decoder"]["d2h_bytes"] == kept * per_detection
    assert math.isclose(kept, len(squares) * k * tiny_artifact.max_detections)
