"""The one source of the Triton model configs, for both flavours, and the assembly of a served repository.

``cpu``: one python-backend model, ``sam3``, runs the three graphs with onnxruntime in its own process,
so image features never cross a process boundary (only the 3 MB square photo comes in and the kept
detections go out). ``gpu``: the three graphs are TensorRT plans (``tensorrt_plan``) in NVIDIA's Triton
container, and ``sam3`` (python) chains them through BLS with device tensors (DLPack,
``FORCE_CPU_ONLY_INPUT_TENSORS: no``): features stay on the GPU. Both flavours live side by side in
``server/inference/model_repository/<model>/``: ``config.pbtxt`` is the CPU flavour and ``configs/gpu.pbtxt`` the GPU
one (``tritonserver --model-config-name=gpu``).

``python -m server.inference.triton_repository`` rewrites the reference configs (full-size SAM3) in
``server/inference/model_repository/``; a test keeps them in step with this module. Pure text: no Triton import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.inference.sam3_core import MAX_DETECTIONS
from server.inference.triton_pbtxt import Batching, batching_text, parameters_text, tensors_text

Flavour = Literal["cpu", "gpu", "torch"]
FLAVOURS: tuple[Flavour, ...] = ("cpu", "gpu")
"""The flavours with committed reference configs (``torch`` is assembled per host: ``torch_repository``)."""
GRAPHS = ("vision", "text", "decoder")
SAM3_MODEL = "sam3"
SOURCE_ROOT = Path(__file__).resolve().with_name("model_repository")
"""The model code and the reference configs; package data, so an installed wheel has them too."""


def graph_model(graph: str) -> str:
    return f"sam3_{graph}"


def served_models(flavour: Flavour) -> tuple[str, ...]:
    """Every model of a served repository of ``flavour``: serving is ready when all of them are."""
    return (SAM3_MODEL,) if flavour == "cpu" else (SAM3_MODEL, *(graph_model(g) for g in GRAPHS))


SERVED_MODELS = served_models("cpu")
"""The models of the repository the embedded Triton serves (the CPU flavour)."""


@dataclass(frozen=True)
class Geometry:
    """Tensor sizes of one exported SAM3 (the tiny test model is smaller than the real one)."""

    image_size: int
    fpn_channels: int
    fpn_sizes: tuple[int, int, int]
    text_length: int
    text_dim: int
    num_queries: int

    @property
    def mask_size(self) -> int:
        return self.fpn_sizes[0]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, object]) -> Geometry:
        g = manifest["geometry"]
        if not isinstance(g, dict):
            raise ValueError("manifest geometry must be an object")
        return cls(
            image_size=int(g["image_size"]),
            fpn_channels=int(g["fpn_channels"]),
            fpn_sizes=(int(g["fpn_sizes"][0]), int(g["fpn_sizes"][1]), int(g["fpn_sizes"][2])),
            text_length=int(g["text_length"]),
            text_dim=int(g["text_dim"]),
            num_queries=int(g["num_queries"]),
        )


FULL_SIZE = Geometry(
    image_size=1008, fpn_channels=256, fpn_sizes=(288, 144, 72), text_length=32, text_dim=256, num_queries=200
)


# GPU flavour (the CPU flavour has no graph models to batch): starting points, NOT measured (no GPU here). A TensorRT graph is fast enough that a
# short wait for a fuller batch pays; re-measure with the same sweep on the serving GPU.
GPU_VISION_BATCHING = Batching(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=2000)
GPU_TEXT_BATCHING = Batching(max_batch_size=64, preferred_batch_sizes=(16, 64), max_queue_delay_us=500)
SAM3_INSTANCES: dict[Flavour, int] = {"cpu": 1, "gpu": 4, "torch": 8}
"""Concurrent ``sam3`` requests. CPU: one, as it holds the graphs (and onnxruntime uses every core);
GPU: each instance holds one request, so the TensorRT graphs see several at once. torch: more, as the
vision graph batches only requests that are in flight at once (starting point, not measured)."""
DECODER_MEMORY_BUDGET_BYTES = 2 << 30
"""Working memory one decoder call may use: the phrases of a request go in chunks that fit."""
GRAPHS_IN_PROCESS = "in_process"
GRAPHS_BLS = "bls"
FLAVOUR_OF_GRAPHS: dict[str, Flavour] = {GRAPHS_IN_PROCESS: "cpu", GRAPHS_BLS: "gpu"}
"""The ``sam3`` model's ``graphs`` parameter says which flavour, so which models, a server has."""


def served_models_for(graphs: str) -> tuple[str, ...]:
    """The models a server must have ready, from its ``sam3`` model's ``graphs`` parameter."""
    return served_models(FLAVOUR_OF_GRAPHS.get(graphs, "gpu"))  # unknown: every model, the strict choice


@dataclass(frozen=True)
class Sam3Parameters:
    """What the ``sam3`` model reports about itself (read back by the client from the model config)."""

    model_name: str
    meaningful: bool
    score_threshold: float
    decoder_bytes_per_phrase: int
    """Measured by the export (decoder working memory per phrase); with the budget it sets the chunks."""
    decoder_memory_budget_bytes: int = DECODER_MEMORY_BUDGET_BYTES
    max_detections: int = MAX_DETECTIONS
    """The export's top-K cap per phrase (its manifest): bounds the size of an answer."""
    text_cache_size: int = 4096


FULL_SIZE_DECODER_BYTES_PER_PHRASE = 180_000_000
"""Reference configs only: the served ones carry the export's measured figure (manifest)."""
REFERENCE = Sam3Parameters(
    model_name="sam3", meaningful=True, score_threshold=0.5, decoder_bytes_per_phrase=FULL_SIZE_DECODER_BYTES_PER_PHRASE
)


def _detections(g: Geometry) -> list[tuple[str, str, list[int]]]:
    """The kept queries, flattened over the prompts: the decoder graph's outputs and ``sam3``'s."""
    m = g.mask_size
    return [
        ("phrase_index", "TYPE_INT32", [-1]),
        ("query_index", "TYPE_INT32", [-1]),
        ("scores", "TYPE_FP32", [-1]),
        ("boxes", "TYPE_FP32", [-1, 4]),
        ("masks", "TYPE_UINT8", [-1, m, m]),
    ]


def graph_io(graph: str, g: Geometry) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """Inputs and outputs of a graph model. Vision and text batch in Triton (the batch axis is implicit);
    the decoder does not (photos and prompts are two different axes), so its axes are explicit."""
    tokens = [("input_ids", "TYPE_INT64", [g.text_length]), ("attention_mask", "TYPE_INT64", [g.text_length])]
    if graph == "vision":
        fpn = [(f"fpn{i}", "TYPE_FP32", [g.fpn_channels, s, s]) for i, s in enumerate(g.fpn_sizes)]
        return [("image", "TYPE_UINT8", [g.image_size, g.image_size, 3])], fpn
    if graph == "text":
        return tokens, [("text_features", "TYPE_FP32", [g.text_length, g.text_dim])]
    if graph == "decoder":
        inputs = [(f"fpn{i}", "TYPE_FP32", [-1, g.fpn_channels, s, s]) for i, s in enumerate(g.fpn_sizes)]
        inputs += [
            ("image_index", "TYPE_INT64", [-1]),
            ("text_features", "TYPE_FP32", [-1, g.text_length, g.text_dim]),
            ("attention_mask", "TYPE_INT64", [-1, g.text_length]),
            ("score_threshold", "TYPE_FP32", [1]),
        ]
        return inputs, _detections(g)
    raise ValueError(f"unknown graph {graph!r}")


_GRAPH_BATCHING: dict[str, Batching] = {"vision": GPU_VISION_BATCHING, "text": GPU_TEXT_BATCHING}


def graph_config(graph: str, g: Geometry, batching: Batching | None = None) -> str:
    """One TensorRT graph model's config (GPU flavour); ``batching`` overrides the default."""
    inputs, outputs = graph_io(graph, g)
    head = f'name: "{graph_model(graph)}"\nplatform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n'
    chosen = batching or _GRAPH_BATCHING.get(graph)
    return (
        head
        + (batching_text(chosen) if chosen else "max_batch_size: 0\n")
        + tensors_text("input", inputs)
        + tensors_text("output", outputs)
        + "instance_group [ { kind: KIND_GPU count: 1 } ]\n"
    )


def sam3_config(flavour: Flavour, g: Geometry, p: Sam3Parameters, intra_op_threads: int = 0) -> str:
    inputs = [
        ("image", "TYPE_UINT8", [g.image_size, g.image_size, 3]),
        ("phrases", "TYPE_STRING", [-1]),
        ("score_threshold", "TYPE_FP32", [1]),
    ]
    params = {
        "model_name": p.model_name,
        "meaningful": "true" if p.meaningful else "false",
        "score_threshold": repr(p.score_threshold),
        "decoder_bytes_per_phrase": str(p.decoder_bytes_per_phrase),
        "decoder_memory_budget_bytes": str(p.decoder_memory_budget_bytes),
        "max_detections": str(p.max_detections),
        "text_cache_size": str(p.text_cache_size),
        "image_size": str(g.image_size),
    }
    if flavour == "cpu":
        params["graphs"] = GRAPHS_IN_PROCESS
        params["intra_op_threads"] = str(intra_op_threads)
    else:
        params["graphs"] = GRAPHS_BLS
        # BLS tensors of the TensorRT graphs stay in device memory; sam3 hands them on through DLPack.
        params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "no"
    return (
        f'name: "{SAM3_MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
        + tensors_text("input", inputs, optional=("score_threshold",))
        + tensors_text("output", _detections(g))
        + f"instance_group [ {{ kind: KIND_CPU count: {SAM3_INSTANCES[flavour]} }} ]\n"
        + parameters_text(params)
    )


def model_configs(flavour: Flavour, g: Geometry, p: Sam3Parameters) -> dict[str, str]:
    """Model name → ``config.pbtxt`` text for every model of the repository (the one list of its models)."""
    configs = {SAM3_MODEL: sam3_config(flavour, g, p)}
    for model in served_models(flavour)[1:]:
        configs[model] = graph_config(model.removeprefix("sam3_"), g)
    return configs


def config_path(root: Path, model: str, flavour: Flavour) -> Path:
    return root / model / ("config.pbtxt" if flavour == "cpu" else "configs/gpu.pbtxt")


def write_reference(root: Path = SOURCE_ROOT) -> list[Path]:
    """Write the full-size configs of both flavours into the committed repository."""
    written = []
    for flavour in FLAVOURS:
        for model, text in model_configs(flavour, FULL_SIZE, REFERENCE).items():
            path = config_path(root, model, flavour)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def _link_or_copy(src: Path, dst: Path) -> None:
    # Hard links: a full-size graph is gigabytes and must not be copied per repository.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


SAM3_CODE = ("model.py", "sam3_core.py", "graph_sessions.py")
"""What the ``sam3`` model directory holds as code (links in the source tree resolve to server/inference;
an installed wheel holds copies)."""


def assemble(
    target: Path,
    flavour: Flavour,
    geometry: Geometry,
    params: Sam3Parameters,
    graph_files: Mapping[str, Path],
    tokenizer_json: Path,
    source_root: Path = SOURCE_ROOT,
) -> Path:
    """Build a servable repository at ``target``: configs for this model, code, graph files, tokenizer.

    ``graph_files`` maps each graph to a folder (CPU: ``model.onnx`` and its external data, placed in
    ``sam3/1/onnx/<graph>/``) or a file (GPU: ``model.plan`` of the graph's own model).
    """
    if target.exists():
        shutil.rmtree(target)
    for model, text in model_configs(flavour, geometry, params).items():
        (target / model / "1").mkdir(parents=True)
        (target / model / "config.pbtxt").write_text(text)
    sam3 = target / SAM3_MODEL / "1"
    for name in SAM3_CODE:
        shutil.copyfile((source_root / SAM3_MODEL / "1" / name).resolve(), sam3 / name)  # resolves the links
    (sam3 / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    for graph in GRAPHS:
        src = graph_files[graph]
        if flavour == "cpu":
            folder = sam3 / "onnx" / graph
            folder.mkdir(parents=True)
            for f in sorted(src.iterdir()):
                _link_or_copy(f, folder / f.name)
        else:
            _link_or_copy(src, target / graph_model(graph) / "1" / "model.plan")
    (target / "repository.json").write_text(json.dumps({"flavour": flavour, "model_name": params.model_name}))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=SOURCE_ROOT, help="where the reference configs go")
    args = parser.parse_args(argv)
    for path in write_reference(args.root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
