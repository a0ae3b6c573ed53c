"""TensorRT plans of the exported graphs (GPU hosts): build with one optimisation profile, run, check.

Not exercised on hosts without TensorRT and a CUDA device (the export records why).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from server.inference.export.graphs import GRAPH_OUTPUTS

TRT_MIN_COSINE = 0.999
TRT_MIN_MASK_IOU = 0.98
TRT_PROFILES = {"vision": (1, 4, 8), "text": (1, 16, 64), "decoder": (1, 8, 64)}
"""min / opt / max batch (decoder: prompts) of each graph's TensorRT optimisation profile."""
TRT_PHOTO_PROFILE = (1, 1, 8)
"""min / opt / max photos of the decoder's image features."""


def tensorrt_available() -> str | None:
    """None when plans can be built and checked here, else the reason why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (TensorRT plans are built and checked on the GPU that serves them)"
    return None


def _profile(graph: str, name: str) -> tuple[int, int, int] | None:
    """min / opt / max of an input's first axis; None for inputs without one (the threshold)."""
    if name == "score_threshold":
        return None
    if graph == "decoder" and name.startswith("fpn"):
        return TRT_PHOTO_PROFILE
    return TRT_PROFILES[graph]


def build_plan(onnx_path: Path, plan_path: Path, graph: str, precision: str, example: dict[str, Any]) -> None:
    """ONNX → serialized TensorRT engine with one optimisation profile over the batch axes."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, tensor in example.items():
        axis = _profile(graph, name)
        shape = tuple(tensor.shape)
        if axis is None:
            profile.set_shape(name, shape, shape, shape)
        else:
            rest = shape[1:]
            profile.set_shape(name, (axis[0], *rest), (axis[1], *rest), (axis[2], *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {graph}")
    plan_path.write_bytes(bytes(serialized))


def run_plan(plan_path: Path, graph: str, feeds: dict[str, Any]) -> list[np.ndarray]:
    """Execute a plan once on the GPU with torch tensors as buffers; outputs of data-dependent size (the
    decoder's kept queries) are allocated by TensorRT's output allocator once their shape is known."""
    import tensorrt as trt
    import torch

    class Outputs(trt.IOutputAllocator):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, name: str, memory: int, size: int, alignment: int) -> int:
            self.buffers[name] = torch.empty(max(size, 1), dtype=torch.uint8, device="cuda")
            return int(self.buffers[name].data_ptr())

        def notify_shape(self, name: str, shape: Any) -> None:
            self.shapes[name] = tuple(shape)

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    keep = []
    for name, value in feeds.items():
        t = value.contiguous().cuda()
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
        keep.append(t)
    allocator = Outputs()
    for name in GRAPH_OUTPUTS[graph]:
        context.set_output_allocator(name, allocator)
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"TensorRT execution of {graph} failed")
    stream.synchronize()
    dtypes = {trt.float32: torch.float32, trt.int32: torch.int32, trt.uint8: torch.uint8, trt.int64: torch.int64}
    outputs = []
    for name in GRAPH_OUTPUTS[graph]:
        shape = allocator.shapes[name]
        dtype = dtypes[engine.get_tensor_dtype(name)]
        count = int(np.prod(shape)) if shape else 1
        flat = allocator.buffers[name].view(dtype)[:count]
        outputs.append(flat.reshape(shape).cpu().numpy())
    return outputs


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a64)) * float(np.linalg.norm(b64))
    return float(a64 @ b64) / max(norm, 1e-30)


def plan_parity(
    plan_path: Path, graph: str, feeds: dict[str, Any], reference: Sequence[np.ndarray]
) -> dict[str, float]:
    """Cosine of every feature output; for the decoder, the mask IoU of the queries both keep."""
    got = run_plan(plan_path, graph, feeds)
    if graph != "decoder":
        return {"cosine": min(_cosine(g, r) for g, r in zip(got, reference, strict=True))}
    mine = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(got[0], got[1], strict=True))}
    theirs = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(reference[0], reference[1], strict=True))}
    both = sorted(set(mine) & set(theirs))
    inter = sum(int(np.logical_and(got[4][mine[k]] >= 128, reference[4][theirs[k]] >= 128).sum()) for k in both)
    union = sum(int(np.logical_or(got[4][mine[k]] >= 128, reference[4][theirs[k]] >= 128).sum()) for k in both)
    agree = len(both) / max(len(set(mine) | set(theirs)), 1)
    return {"cosine": agree, "mask_iou": inter / union if union else 1.0}
