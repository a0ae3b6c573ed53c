"""The ``torch`` flavour of the Triton repository: the three graphs as python-backend models running
PyTorch (``torch_graphs``), chained by the GPU flavour's BLS ``sam3`` model.

Assembled per host (the configs name the checkpoint and the device), so it has no committed reference
configs. Pure text and file copies: no Triton import.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.inference.triton_pbtxt import Batching, batching_text, parameters_text, tensors_text
from server.inference.triton_repository import (
    GPU_TEXT_BATCHING,
    GPU_VISION_BATCHING,
    GRAPHS,
    SAM3_CODE,
    SAM3_MODEL,
    SOURCE_ROOT,
    Geometry,
    Sam3Parameters,
    graph_io,
    graph_model,
    sam3_config,
)

CODE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``server`` package: a checkout, or site-packages."""
TORCH_GRAPH_CODE = ("model.py",)
"""What each graph model of the ``torch`` flavour holds as code, from ``model_repository/torch_graph/``
(plus ``torch_graphs.py`` from server/inference)."""
TORCH_VISION_BATCHING = GPU_VISION_BATCHING
TORCH_TEXT_BATCHING = GPU_TEXT_BATCHING
CUDA_POOL_BYTES = 1 << 30
"""Triton's CUDA memory pool per GPU (``--cuda-memory-pool-byte-size``): the python backend passes
device tensors between stubs through it; a batch of 8 full-size photos' features is ~0.9 GB."""


@dataclass(frozen=True)
class TorchRuntime:
    """Where and how the ``torch`` flavour's graph models run."""

    checkpoint: Path
    """The checkpoint directory (``S3_SAM3_CHECKPOINT``, or the tiny export's ``checkpoint/``)."""
    device: Literal["cuda", "cpu"] = "cuda"
    precision: Literal["bfloat16", "float32"] = "bfloat16"
    compile_mode: str = ""
    """``torch.compile`` of the vision graph (``torch_graphs.COMPILE_MODES``); off by default."""
    code_root: Path = CODE_ROOT
    """Where the ``server`` package that defines the graph modules (``server.inference.export``) is."""
    stats_dir: Path | None = None
    """Where the graph models write their counters after each execution (benchmarks); None: nowhere."""

    def triton_args(self) -> tuple[str, ...]:
        """Extra ``tritonserver`` arguments this runtime needs."""
        return (f"--cuda-memory-pool-byte-size=0:{CUDA_POOL_BYTES}",) if self.device == "cuda" else ()


def torch_graph_config(
    graph: str, g: Geometry, p: Sam3Parameters, runtime: TorchRuntime, batching: Batching | None = None
) -> str:
    """One graph model of the ``torch`` flavour: the TensorRT model's inputs and outputs, python backend."""
    inputs, outputs = graph_io(graph, g)
    chosen = batching or {"vision": TORCH_VISION_BATCHING, "text": TORCH_TEXT_BATCHING}.get(graph)
    params = {
        "graph": graph,
        "checkpoint": str(runtime.checkpoint),
        "device": runtime.device,
        "precision": runtime.precision,
        "max_detections": str(p.max_detections),
        "compile_mode": runtime.compile_mode,
        "code_root": str(runtime.code_root),
        "stats_dir": str(runtime.stats_dir or ""),
    }
    if graph == "decoder":
        params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "no"  # the image features arrive as device tensors
    kind = "KIND_GPU" if runtime.device == "cuda" else "KIND_CPU"
    return (
        f'name: "{graph_model(graph)}"\nbackend: "python"\n'
        + (batching_text(chosen) if chosen else "max_batch_size: 0\n")
        + tensors_text("input", inputs)
        + tensors_text("output", outputs)
        + f"instance_group [ {{ kind: {kind} count: 1 }} ]\n"
        + parameters_text(params)
    )


def torch_model_configs(
    g: Geometry, p: Sam3Parameters, runtime: TorchRuntime, vision_batching: Batching | None = None
) -> dict[str, str]:
    """Model name -> config text of the ``torch`` flavour (``sam3`` chains the graphs through BLS)."""
    configs = {SAM3_MODEL: sam3_config("torch", g, p)}
    for graph in GRAPHS:
        configs[graph_model(graph)] = torch_graph_config(
            graph, g, p, runtime, vision_batching if graph == "vision" else None
        )
    return configs


def assemble_torch(
    target: Path,
    geometry: Geometry,
    params: Sam3Parameters,
    runtime: TorchRuntime,
    tokenizer_json: Path,
    source_root: Path = SOURCE_ROOT,
    vision_batching: Batching | None = None,
) -> Path:
    """Build a servable ``torch`` repository at ``target``: no graph files, the graph models load the
    checkpoint themselves; ``sam3`` is the GPU flavour's BLS model."""
    if target.exists():
        shutil.rmtree(target)
    for model, text in torch_model_configs(geometry, params, runtime, vision_batching).items():
        (target / model / "1").mkdir(parents=True)
        (target / model / "config.pbtxt").write_text(text)
    sam3 = target / SAM3_MODEL / "1"
    for name in SAM3_CODE:
        shutil.copyfile((source_root / SAM3_MODEL / "1" / name).resolve(), sam3 / name)
    (sam3 / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    for graph in GRAPHS:
        folder = target / graph_model(graph) / "1"
        for name in TORCH_GRAPH_CODE:
            shutil.copyfile(source_root / "torch_graph" / name, folder / name)
        shutil.copyfile(Path(__file__).with_name("torch_graphs.py"), folder / "torch_graphs.py")
    (target / "repository.json").write_text(json.dumps({"flavour": "torch", "model_name": params.model_name}))
    return target
