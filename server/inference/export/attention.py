"""SAM3's attention as the decoder graph exports it: fused where it has no mask, else in query chunks.

The DETR encoder attends over every image token (72 x 72 = 5184 at full size). Exported as written
(``eager``: MatMul, Softmax, MatMul) it materialises a ``[K, 8, 5184, 5184]`` fp32 score tensor, 860 MB
per phrase, that onnxruntime allocates, first touches and frees on every call; the page faults alone
were 12 of 31 s of a 4-phrase call at full size (PyTorch eager serves the same head through SDPA's
fused kernel and never holds the whole tensor). Splitting the queries into chunks of
:data:`QUERY_CHUNK` gives the same result (softmax runs over keys, which stay whole) with a score
tensor of ``[K, 8, QUERY_CHUNK, 5184]`` that the graph's memory planner reuses from chunk to chunk.
Attention without a mask (that self-attention) goes further: one fused op (``fused_attention``) when
``fused`` (the onnxruntime graph); the chunks stay for masked attention and for TensorRT's graph.

Runs in the model environment (torch, transformers); imported by the export package only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from server.inference.export.fused_attention import fused_attention, score_scale

QUERY_CHUNK = 576
"""Queries per chunk: 5184 / 9; a chunk's scores are 95 MB per phrase at full size."""
IMPLEMENTATION = "s3_detector_attention"
"""The name under which transformers finds this attention (and the eager mask it expects)."""
DETECTOR_PARTS = ("geometry_encoder", "detr_encoder", "detr_decoder", "mask_decoder")
"""Sam3Model's submodules inside the decoder graph; the vision and text encoders keep their attention."""


def query_chunked_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    chunk: int | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' eager attention (``[B, H, L, D]`` in, ``[B, L, H, D]`` out), computed ``chunk`` queries
    (default :data:`QUERY_CHUNK`) at a time when both the queries and the keys outnumber it (small score
    tensors stay whole). Returns no attention weights: no SAM3 caller reads them."""
    import torch
    from transformers.models.sam3.modeling_sam3 import eager_attention_forward

    chunk = chunk or QUERY_CHUNK
    queries, keys = int(query.shape[2]), int(key.shape[2])
    if queries <= chunk or keys <= chunk:
        output, _ = eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout)
        return output, None
    scale = score_scale(query, scaling)
    keys_t = key.transpose(2, 3)
    per_query_mask = attention_mask is not None and int(attention_mask.shape[-2]) > 1
    parts = []
    for start in range(0, queries, chunk):
        scores = torch.matmul(query[:, :, start : start + chunk], keys_t) * scale
        if attention_mask is not None:
            scores = scores + (attention_mask[..., start : start + chunk, :] if per_query_mask else attention_mask)
        parts.append(torch.matmul(torch.softmax(scores, dim=-1), value))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def fused_or_chunked_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, *args: Any, **kwargs: Any
) -> tuple[Any, None]:
    """The fused op for attention without a mask, query chunks for the rest."""
    if attention_mask is None:
        return fused_attention(module, query, key, value, None, *args, **kwargs)
    return query_chunked_attention(module, query, key, value, attention_mask, *args, **kwargs)


@contextmanager
def detector_attention(model: Any, fused: bool) -> Iterator[None]:
    """Within the block, the detector parts of ``model`` (a ``Sam3Model``) attend in query chunks and,
    when ``fused``, through the fused op where there is no mask (export with
    ``fused_attention.onnx_translations()`` then)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, fused_or_chunked_attention if fused else query_chunked_attention)
    # The masks stay eager's (additive float); an unknown name would make transformers skip building them.
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    configs = {
        id(m.config): m.config
        for part in DETECTOR_PARTS
        for m in getattr(model, part).modules()
        if hasattr(m, "config")
    }
    before = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = IMPLEMENTATION
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]
