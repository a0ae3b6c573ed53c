"""The three SAM3 graphs run by PyTorch on one device: the graph models of the ``torch`` flavour.

The graphs are the export's own modules (``server.inference.export.graphs.graph_modules``: the same cut, the
same inputs and outputs as the ONNX graphs and TensorRT plans), built from the checkpoint through the
production loader (``Sam3Model.from_pretrained``), so the three runtimes cannot drift apart. Only the
parts of SAM3 a graph uses are moved to the device.

Host <-> device traffic goes through two functions, :meth:`TorchGraph.to_device` and
:meth:`TorchGraph.to_host`, which count the bytes: what a GPU run moves is measured, not derived from
shapes. Image features are "device-resident" inputs of the decoder: they are counted only when they
arrive in host memory on a device that is not the host (a copy somebody made on the way). On a CPU
device every count is what the same requests move on a GPU, except such hidden copies, which a CPU
cannot show. No Triton import: the Triton model (``model_repository/torch_graph/model.py`` beside it) wraps it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRAPHS = ("vision", "text", "decoder")
PRECISIONS = ("float32", "bfloat16")
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune")
"""``torch.compile`` of the vision graph: off (""), or one of torch's modes (``reduce-overhead`` uses
CUDA graphs). Off unless measured to pay on the serving GPU."""
USED_PARTS = {
    "vision": ("vision_encoder",),
    "text": ("text_encoder", "text_projection"),
}
"""Children of ``Sam3Model`` each graph runs (the decoder: every other one, plus the vision neck's
position encoding, which is parameter-free)."""


class TorchGraph:
    """One graph on one device and precision; inputs and outputs as the exported graph's."""

    def __init__(
        self,
        graph: str,
        checkpoint: Path,
        *,
        device: str = "cpu",
        precision: str = "float32",
        max_detections: int,
        code_root: Path | None = None,
        compile_mode: str = "",
        attention: str = "sdpa",
    ) -> None:
        if graph not in GRAPHS:
            raise ValueError(f"unknown graph {graph!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        import torch

        if code_root is not None and str(code_root) not in sys.path:
            sys.path.insert(0, str(code_root))  # the checkout whose export code defines the graphs
        from transformers import Sam3Model

        from server.inference.export.graphs import graph_modules

        self.torch = torch
        self.graph = graph
        self.device = torch.device(device)
        self.dtype = getattr(torch, precision)
        model = Sam3Model.from_pretrained(
            str(checkpoint), local_files_only=True, dtype=self.dtype, attn_implementation=attention
        ).eval()
        model.requires_grad_(False)
        for name, child in model.named_children():
            if graph == "decoder" and name in (*USED_PARTS["vision"], *USED_PARTS["text"]):
                continue
            if graph == "decoder" or name in USED_PARTS[graph]:
                child.to(self.device)
        if graph == "decoder":
            model.vision_encoder.neck.to(self.device)  # position encoding of the features
        self.module = graph_modules(model, max_detections)[graph]
        if compile_mode and graph == "vision":
            self.module = torch.compile(self.module, mode=compile_mode, dynamic=False)
        self.h2d_bytes = 0
        self.d2h_bytes = 0
        self.calls = 0
        # bf16 weights meet fp32 tensors inside the graphs (the normalised image, layer norms):
        # autocast casts at each op, as the graphs were written for one dtype.
        self._reduced = precision != "float32"
        self.items = 0
        self._lock = threading.Lock()

    @property
    def on_host(self) -> bool:
        return bool(self.device.type == "cpu")

    def to_device(self, value: Any, resident: bool = False) -> Any:
        """A host array (or a tensor from DLPack) on the graph's device; counts host -> device bytes.

        ``resident``: an input that should already be on the device (image features): counted only
        when it is not (the caller, or Triton, copied it to the host on the way)."""
        torch = self.torch
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(value)
        if not resident or (tensor.device.type == "cpu" and not self.on_host):
            with self._lock:
                self.h2d_bytes += int(tensor.numel() * tensor.element_size())
        return tensor.to(self.device, non_blocking=False)

    def to_host(self, tensor: Any) -> Any:
        """A device tensor as a host numpy array; counts device -> host bytes."""
        with self._lock:
            self.d2h_bytes += int(tensor.numel() * tensor.element_size())
        return tensor.detach().cpu().numpy()

    def _features(self, tensor: Any) -> Any:
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def _running(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(self.torch.inference_mode())
        stack.enter_context(self.torch.autocast(self.device.type, dtype=self.dtype, enabled=self._reduced))
        return stack

    def vision(self, images: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Square uint8 images ``[b_i, S, S, 3]`` of several requests, one forward for all of them;
        per request its fp32 FPN levels, left on the device."""
        torch = self.torch
        sizes = [int(i.shape[0]) for i in images]
        batch = self.to_device(images[0] if len(images) == 1 else torch.cat([torch.from_numpy(i) for i in images]))
        with self._running():
            levels = [f.float().contiguous() for f in self.module(batch)]
        self._count(len(sizes), sum(sizes))
        out, start = [], 0
        for size in sizes:
            out.append(tuple(level[start : start + size] for level in levels))
            start += size
        return out

    def text(self, input_ids: Sequence[Any], attention_mask: Sequence[Any]) -> list[Any]:
        """Token rows of several requests, one forward; per request its fp32 features on the host."""
        torch = self.torch
        sizes = [int(i.shape[0]) for i in input_ids]
        ids = self.to_device(torch.cat([torch.from_numpy(i) for i in input_ids]))
        mask = self.to_device(torch.cat([torch.from_numpy(m) for m in attention_mask]))
        with self._running():
            features = self.to_host(self.module(ids, mask).float())
        self._count(len(sizes), sum(sizes))
        out, start = [], 0
        for size in sizes:
            out.append(features[start : start + size])
            start += size
        return out

    def decoder(
        self, fpn: Sequence[Any], image_index: Any, text_features: Any, attention_mask: Any, score_threshold: Any
    ) -> dict[str, Any]:
        """One decoder call: device-resident features, host prompts; the kept detections on the host."""
        from server.inference import sam3_core

        levels = [self._features(self.to_device(f, resident=True)) for f in fpn]
        index = self.to_device(image_index)
        features = self._features(self.to_device(text_features))
        mask = self.to_device(attention_mask)
        threshold = self._features(self.to_device(score_threshold))
        with self._running():
            found = self.module(*levels, index, features, mask, threshold)
        self._count(1, int(image_index.shape[0]))
        out = {}
        for name, value in zip(sam3_core.DETECTION_OUTPUTS, found, strict=True):
            out[name] = self.to_host(value.float() if value.is_floating_point() else value)
        return out

    def _count(self, calls: int, items: int) -> None:
        with self._lock:
            self.calls += calls
            self.items += items

    def stats(self) -> dict[str, Any]:
        """Counters since start, and the peak device memory of this process (CUDA only)."""
        peak = 0
        if self.device.type == "cuda":
            peak = int(self.torch.cuda.max_memory_allocated(self.device))
        with self._lock:
            return {
                "graph": self.graph,
                "device": str(self.device),
                "precision": str(self.dtype).removeprefix("torch."),
                "h2d_bytes": self.h2d_bytes,
                "d2h_bytes": self.d2h_bytes,
                "calls": self.calls,
                "items": self.items,
                "peak_device_bytes": peak,
                "pid": os.getpid(),
            }

    def write_stats(self, folder: Path) -> None:
        """Replace ``folder/<graph>.json`` with :meth:`stats` (atomically: a reader never sees half)."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.graph}.json"
        scratch = target.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(self.stats()))
        os.replace(scratch, target)


def read_stats(folder: Path) -> dict[str, dict[str, Any]]:
    """Every graph's last written counters (graphs that have not run yet are missing)."""
    found = {}
    for graph in GRAPHS:
        path = folder / f"{graph}.json"
        if path.is_file():
            found[graph] = json.loads(path.read_text())
    return found
