"""SAM3's unmasked attention as one fused op in the decoder graph: onnxruntime's ``MultiHeadAttention``.

The DETR encoder's self-attention runs over every image token (72 x 72 = 5184 at full size) without a
mask. As MatMul, Softmax, MatMul (even in query chunks, ``attention``) onnxruntime writes and re-reads
a ``[K, 8, chunk, 5184]`` score tensor per chunk, memory-bound; its contrib op
``com.microsoft.MultiHeadAttention`` computes the same attention with MLAS's flash kernel on CPU (tiles
that stay in cache, no score tensor), as PyTorch's SDPA does for eager SAM3 (the 4-phrase layer: 1.08 s
against 2.05 s chunked, bench in ``docs/benchmarks.md``). TensorRT does not parse contrib ops: plans are
built from a decoder exported without it (``attention.detector_attention(..., fused=False)``).

In the graph a torch custom op (:func:`fused_attention_op`) stands for the attention; the exporter
translates it (:func:`onnx_translations`). Run eagerly the op is the plain attention, so modules that
use it still compute SAM3's result. Runs in the model environment (torch, onnx, onnxscript).
"""

from __future__ import annotations

import functools
from typing import Any

DOMAIN = "com.microsoft"
OP_TYPE = "MultiHeadAttention"
TORCH_OP = "s3export::fused_attention"


@functools.cache
def fused_attention_op() -> Any:
    """``fused_attention(query, key, value, num_heads, scale)`` on ``[B, L, H*D]`` tensors (the layout
    onnxruntime's op takes), registered with torch once per process."""
    import torch

    # The schema is spelled out: this module's annotations are strings (``from __future__``).
    schema = "(Tensor query, Tensor key, Tensor value, int num_heads, float scale) -> Tensor"

    @torch.library.custom_op(TORCH_OP, mutates_args=(), schema=schema)  # type: ignore[untyped-decorator]
    def fused_attention(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, num_heads: int, scale: float
    ) -> torch.Tensor:
        heads = [t.unflatten(2, (num_heads, -1)).transpose(1, 2) for t in (query, key, value)]
        weights = torch.softmax(torch.matmul(heads[0], heads[1].transpose(2, 3)) * scale, dim=-1)
        return torch.matmul(weights, heads[2]).transpose(1, 2).flatten(2).contiguous()

    @fused_attention.register_fake  # type: ignore[untyped-decorator]
    def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
        return query.new_empty(query.shape[0], query.shape[1], value.shape[2])

    return torch.ops.s3export.fused_attention.default


def score_scale(query: Any, scaling: float | None) -> float:
    """The factor on ``q . k``: transformers' ``scaling`` when the module gives one, else 1/sqrt(head size)."""
    return float(scaling) if scaling is not None else float(query.shape[-1]) ** -0.5


def fused_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention interface (``[B, H, L, D]`` in, ``[B, L, H, D]`` out) through the fused op;
    only for attention without a mask (the op's flash path takes none)."""
    if attention_mask is not None:
        raise ValueError("fused attention takes no mask")
    heads = int(query.shape[1])
    scale = score_scale(query, scaling)
    flat = [t.transpose(1, 2).flatten(2) for t in (query, key, value)]
    output = fused_attention_op()(flat[0], flat[1], flat[2], heads, scale)
    return output.unflatten(2, (heads, -1)), None


@functools.cache
def onnx_translations() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export``: the fused op becomes
    ``com.microsoft.MultiHeadAttention`` (its schema is declared to onnx once: onnx knows no contrib ops)."""
    import onnx
    import onnxscript
    from onnx.defs import OpSchema

    if not onnx.defs.has(OP_TYPE, DOMAIN):
        onnx.defs.register_schema(
            OpSchema(
                OP_TYPE,
                DOMAIN,
                1,
                inputs=[OpSchema.FormalParameter(name, "T") for name in ("query", "key", "value")],
                outputs=[OpSchema.FormalParameter("output", "T")],
                type_constraints=[("T", ["tensor(float)"], "fp32 attention")],
                attributes=[
                    OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "attention heads"),
                    OpSchema.Attribute("scale", OpSchema.AttrType.FLOAT, "scale of the scores"),
                ],
            )
        )
    contrib = onnxscript.values.Opset(DOMAIN, 1)

    def translate(query: Any, key: Any, value: Any, num_heads: int, scale: float) -> Any:
        return getattr(contrib, OP_TYPE)(query, key, value, num_heads=num_heads, scale=scale)

    return {fused_attention_op(): translate}
