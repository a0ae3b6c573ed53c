"""The vision graph alone: PyTorch (SDPA) vs onnxruntime with SAM3's attention as written or fused.

``python -m bench.sam3_vision_ab [--size full|tiny] [--rounds 2] [--work DIR] [--json PATH]`` (model
environment). Builds a seeded random-weight SAM3 vision encoder of the published size (the shapes and
cost of the real one; no checkpoint needed), exports its graph twice as the export does (uint8 image
in, normalisation in the graph): ``eager`` (MatMul, Softmax, MatMul: what the served vision graph
is) and ``fused`` (every ViT attention as ``com.microsoft.MultiHeadAttention``, MLAS's flash kernel),
then times PyTorch SDPA (as ``bench.sam3_eager`` serves it) and both sessions back to back, one photo,
``--rounds`` times, so load on a shared machine falls on all of them alike. Each call carries its
process CPU time and the load average; each variant its max |difference| from PyTorch.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VARIANTS = ("eager", "fused")
FUSED_IMPLEMENTATION = "s3_vision_fused"


def vision_encoder(size: str) -> Any:
    """A seeded random-weight ``Sam3VisionModel`` of the tiny or the published configuration."""
    import torch
    from transformers.models.sam3.modeling_sam3 import Sam3VisionModel

    from server.inference.export.checkpoints import TINY_SEED, full_config, tiny_config

    torch.manual_seed(TINY_SEED)
    # The vision part reads no text vocabulary: CLIP's size and special tokens stand in for it.
    config = (tiny_config if size == "tiny" else full_config)(49408, 49406, 49407).vision_config
    return Sam3VisionModel(config).eval()


def set_attention(model: Any, implementation: str) -> None:
    for module in model.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = implementation


def fused_op_count(path: Path) -> int:
    """How many attentions of the graph at ``path`` are the fused op."""
    import onnx

    from server.inference.export.fused_attention import OP_TYPE

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(node.op_type == OP_TYPE for node in graph.node)


def timed(call: Callable[[], Any]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 2),
        "load": os.getloadavg()[0],
    }


def run(size: str, rounds: int, work: Path) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch
    from torch import nn
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from server.inference.export.fused_attention import fused_attention, onnx_translations
    from server.inference.export.graphs import normalise
    from server.inference.graph_sessions import session_options

    model = vision_encoder(size)
    ALL_ATTENTION_FUNCTIONS.register(FUSED_IMPLEMENTATION, fused_attention)

    class Vision(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, image: Any) -> Any:
            f = self.m(normalise(image)).fpn_hidden_states
            return f[0], f[1], f[2]

    graph = Vision().eval()
    side = int(model.config.backbone_config.image_size)
    image = torch.randint(0, 256, (1, side, side, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    big = sum(p.numel() for p in model.parameters()) * 4 > 1 << 30
    sessions: dict[str, Any] = {}
    export_s: dict[str, float] = {}
    fused_ops: dict[str, int] = {}
    with torch.no_grad():
        for variant in VARIANTS:
            set_attention(model, FUSED_IMPLEMENTATION if variant == "fused" else "eager")
            path = work / variant / "model.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            torch.onnx.export(
                graph,
                (image,),
                str(path),
                input_names=["image"],
                output_names=["fpn0", "fpn1", "fpn2"],
                opset_version=18,
                dynamo=True,
                external_data=big,
                custom_translation_table=onnx_translations() if variant == "fused" else None,
            )
            export_s[variant] = round(time.perf_counter() - started, 1)
            fused_ops[variant] = fused_op_count(path)
            sessions[variant] = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
        set_attention(model, "sdpa")
        reference = [t.numpy() for t in graph(image)]
        feeds = {"image": image.numpy()}
        calls: dict[str, list[dict[str, float]]] = {"torch_sdpa": [], **{f"onnx_{v}": [] for v in VARIANTS}}
        for _ in range(rounds):
            calls["torch_sdpa"].append(timed(lambda: graph(image)))
            for variant, session in sessions.items():
                calls[f"onnx_{variant}"].append(timed(functools.partial(session.run, None, feeds)))
    diffs = {
        variant: max(float(np.abs(a - b).max()) for a, b in zip(session.run(None, feeds), reference, strict=True))
        for variant, session in sessions.items()
    }
    return {
        "size": size,
        "image_size": side,
        "parameters": sum(p.numel() for p in model.parameters()),
        "cpus": os.cpu_count(),
        "export_s": export_s,
        "fused_ops": fused_ops,
        "calls": calls,
        "max_abs_diff": diffs,
        "note": "random weights: speed figures, not accuracy",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, help="where the two graphs are written (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vision_ab.") as scratch:
        result = run(args.size, args.rounds, args.work or Path(scratch))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
