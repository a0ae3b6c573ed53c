"""The one source of the Triton model configs, for both flavours, and the assembly of a served repository.

``cpu``: every model is a python-backend model; the three graphs run in onnxruntime. ``gpu``: the three
graphs are TensorRT plans (``tensorrt_plan``) in NVIDIA's Triton container; ``sam3`` stays a python
model. Both flavours live side by side in ``model_repository/<model>/``: ``config.pbtxt`` is the CPU
flavour and ``configs/gpu.pbtxt`` the GPU one (``tritonserver --model-config-name=gpu``).

``python -m server.inference.triton_repository`` rewrites the reference configs (full-size SAM3) in
``model_repository/``; a test keeps them in step with this module. Pure text: no Triton import.
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

Flavour = Literal["cpu", "gpu"]
FLAVOURS: tuple[Flavour, ...] = ("cpu", "gpu")
GRAPHS = ("vision", "text", "decoder")
SAM3_MODEL = "sam3"
SOURCE_ROOT = Path(__file__).resolve().parents[2] / "model_repository"


def graph_model(graph: str) -> str:
    return f"sam3_{graph}"


SERVED_MODELS = (SAM3_MODEL, *(graph_model(g) for g in GRAPHS))
"""Every model of a served repository: serving is ready when all of them are."""


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


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of one graph model. Values chosen by measurement: docs/sam3_serving.md."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int


# CPU flavour, measured here (docs/sam3_serving.md, `python -m bench.triton_bench --parts queue_delay`):
# every microsecond of queue delay lowered throughput (vision at concurrency 8: 849/s at 0 us, 748 at
# 1 ms, 580 at 5 ms, 501 at 20 ms), because python-backend overhead, not the graph, dominates on CPU.
# With no delay the batcher still merges whatever queued while the instance was busy.
VISION_BATCHING = Batching(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=0)
TEXT_BATCHING = Batching(max_batch_size=64, preferred_batch_sizes=(16, 64), max_queue_delay_us=0)
DECODER_BATCHING = Batching(max_batch_size=16, preferred_batch_sizes=(8, 16), max_queue_delay_us=0)
# GPU flavour: starting points, NOT measured (no GPU here). A TensorRT graph is fast enough that a
# short wait for a fuller batch pays; re-measure with the same sweep on the serving GPU.
GPU_VISION_BATCHING = Batching(max_batch_size=8, preferred_batch_sizes=(4, 8), max_queue_delay_us=2000)
GPU_TEXT_BATCHING = Batching(max_batch_size=64, preferred_batch_sizes=(16, 64), max_queue_delay_us=500)
GPU_DECODER_BATCHING = Batching(max_batch_size=16, preferred_batch_sizes=(8, 16), max_queue_delay_us=1000)
SAM3_INSTANCES = 4
"""Concurrent ``sam3`` requests: each instance holds one request, so the graphs see several at once."""


@dataclass(frozen=True)
class Sam3Parameters:
    """What the ``sam3`` model reports about itself (read back by the client from the model config)."""

    model_name: str
    meaningful: bool
    score_threshold: float
    decoder_batch: int = DECODER_BATCHING.max_batch_size
    text_cache_size: int = 4096


REFERENCE = Sam3Parameters(model_name="sam3", meaningful=True, score_threshold=0.5)


def _dims(shape: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _tensors(kind: str, tensors: Sequence[tuple[str, str, Sequence[int]]], optional: Sequence[str] = ()) -> str:
    rows = []
    for name, dtype, shape in tensors:
        extra = " optional: true" if name in optional else ""
        rows.append(f'  {{ name: "{name}" data_type: {dtype} dims: {_dims(shape)}{extra} }}')
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _parameters(values: Mapping[str, str]) -> str:
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in sorted(values.items()))


def _batching(b: Batching) -> str:
    preferred = ", ".join(str(n) for n in b.preferred_batch_sizes)
    return (
        f"max_batch_size: {b.max_batch_size}\n"
        f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] "
        f"max_queue_delay_microseconds: {b.max_queue_delay_us} }}\n"
    )


def _graph_io(graph: str, g: Geometry) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    fpn = [(f"fpn{i}", "TYPE_FP32", [g.fpn_channels, s, s]) for i, s in enumerate(g.fpn_sizes)]
    tokens = [("input_ids", "TYPE_INT64", [g.text_length]), ("attention_mask", "TYPE_INT64", [g.text_length])]
    features = ("text_features", "TYPE_FP32", [g.text_length, g.text_dim])
    m, q = g.mask_size, g.num_queries
    if graph == "vision":
        return [("pixel_values", "TYPE_FP32", [3, g.image_size, g.image_size])], fpn
    if graph == "text":
        return tokens, [features]
    if graph == "decoder":
        outputs = [
            ("pred_masks", "TYPE_FP32", [q, m, m]),
            ("pred_boxes", "TYPE_FP32", [q, 4]),
            ("pred_logits", "TYPE_FP32", [q]),
            ("presence_logits", "TYPE_FP32", [1]),
            ("semantic_seg", "TYPE_FP32", [1, m, m]),
        ]
        return [*fpn, features, ("attention_mask", "TYPE_INT64", [g.text_length])], outputs
    raise ValueError(f"unknown graph {graph!r}")


_GRAPH_BATCHING: dict[Flavour, dict[str, Batching]] = {
    "cpu": {"vision": VISION_BATCHING, "text": TEXT_BATCHING, "decoder": DECODER_BATCHING},
    "gpu": {"vision": GPU_VISION_BATCHING, "text": GPU_TEXT_BATCHING, "decoder": GPU_DECODER_BATCHING},
}


def graph_config(
    graph: str, flavour: Flavour, g: Geometry, intra_op_threads: int = 0, batching: Batching | None = None
) -> str:
    """One graph model's config; ``batching`` overrides the measured default (benchmarks sweep it)."""
    inputs, outputs = _graph_io(graph, g)
    head = f'name: "{graph_model(graph)}"\n'
    if flavour == "cpu":
        head += 'backend: "python"\n'
        group = "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        params = _parameters({"intra_op_threads": str(intra_op_threads)})
    else:
        head += 'platform: "tensorrt_plan"\ndefault_model_filename: "model.plan"\n'
        group = "instance_group [ { kind: KIND_GPU count: 1 } ]\n"
        params = ""
    return (
        head
        + _batching(batching or _GRAPH_BATCHING[flavour][graph])
        + _tensors("input", inputs)
        + _tensors("output", outputs)
        + group
        + params
    )


def sam3_config(flavour: Flavour, g: Geometry, p: Sam3Parameters) -> str:
    m = g.mask_size
    inputs = [
        ("image", "TYPE_UINT8", [-1, -1, 3]),
        ("phrases", "TYPE_STRING", [-1]),
        ("score_threshold", "TYPE_FP32", [1]),
    ]
    outputs = [
        ("phrase_index", "TYPE_INT32", [-1]),
        ("query_index", "TYPE_INT32", [-1]),
        ("scores", "TYPE_FP32", [-1]),
        ("boxes", "TYPE_FP32", [-1, 4]),
        ("masks", "TYPE_UINT8", [-1, m, m]),
    ]
    params = {
        "model_name": p.model_name,
        "meaningful": "true" if p.meaningful else "false",
        "score_threshold": repr(p.score_threshold),
        "decoder_batch": str(p.decoder_batch),
        "text_cache_size": str(p.text_cache_size),
        "image_size": str(g.image_size),
    }
    if flavour == "gpu":
        # BLS results of GPU models are handed to numpy in this model: keep its tensors in host memory.
        params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "yes"
    return (
        f'name: "{SAM3_MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
        + _tensors("input", inputs, optional=("score_threshold",))
        + _tensors("output", outputs)
        + f"instance_group [ {{ kind: KIND_CPU count: {SAM3_INSTANCES} }} ]\n"
        + _parameters(params)
    )


def model_configs(flavour: Flavour, g: Geometry, p: Sam3Parameters) -> dict[str, str]:
    """Model name → ``config.pbtxt`` text for every model of the repository."""
    configs = {SAM3_MODEL: sam3_config(flavour, g, p)}
    for graph in GRAPHS:
        configs[graph_model(graph)] = graph_config(graph, flavour, g)
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

    ``graph_files`` maps each graph to a folder (CPU: ``model.onnx`` and its external data) or a file
    (GPU: ``model.plan``).
    """
    if target.exists():
        shutil.rmtree(target)
    for model, text in model_configs(flavour, geometry, params).items():
        version = target / model / "1"
        version.mkdir(parents=True)
        (target / model / "config.pbtxt").write_text(text)
        if model == SAM3_MODEL or flavour == "cpu":
            code = source_root / model / "1"
            for src in sorted(code.iterdir()):
                if src.suffix == ".py":
                    shutil.copyfile(src.resolve(), version / src.name)  # resolves the shared-code links
    (target / SAM3_MODEL / "1" / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    for graph in GRAPHS:
        version = target / graph_model(graph) / "1"
        src = graph_files[graph]
        if src.is_dir():
            for f in sorted(src.iterdir()):
                _link_or_copy(f, version / f.name)
        else:
            _link_or_copy(src, version / "model.plan")
    (target / "repository.json").write_text(json.dumps({"flavour": flavour, "model_name": params.model_name}))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=SOURCE_ROOT, help="where the reference configs go")
    parser.add_argument("--artifact", type=Path, help="instead: assemble the CPU repository of this export")
    parser.add_argument("--out", type=Path, help="with --artifact: the repository folder to (re)create")
    args = parser.parse_args(argv)
    if args.artifact is not None:
        from server.inference.artifacts import ModelArtifact  # the artefact reader imports this module

        if args.out is None:
            parser.error("--artifact needs --out")
        print(ModelArtifact.load(args.artifact).cpu_repository(args.out))
        return 0
    for path in write_reference(args.root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
