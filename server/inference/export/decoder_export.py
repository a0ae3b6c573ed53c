"""The decoder graph's export and gates, shared by the full export and the decoder-only re-export.

The served graph (``decoder_graph.selecting_decoder``) is exported with the fused attention
(onnxruntime) or without it (``fused=False``: the graph TensorRT parses), then refused unless it
draws masks for ``max_detections`` queries only and its selection matches SAM3's own head at
thresholds that admit some queries and refuse others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from server.inference.export.attention import detector_attention
from server.inference.export.decoder_graph import mask_query_count
from server.inference.export.fused_attention import onnx_translations
from server.inference.export.gates import ParityError
from server.inference.export.graphs import export_onnx, open_session
from server.inference.export.selection import decoder_gate


def export_decoder(
    model: Any, module: Any, example: dict[str, Any], folder: Path, external_data: bool, fused: bool = True
) -> Path:
    """The decoder graph to ``folder/model.onnx``; the references stay SAM3's own attention."""
    with detector_attention(model, fused):
        return export_onnx(
            module, example, "decoder", folder, external_data, translations=onnx_translations() if fused else None
        )


def gate_decoder(
    path: Path, feeds: dict[str, Any], raw_ref: Sequence[np.ndarray], cap: int, tol: float
) -> dict[str, Any]:
    """Mask-query gate, then the selection gate; returns their figures and the working memory per phrase."""
    import onnx

    queries = mask_query_count(onnx.load(str(path), load_external_data=False))
    if queries != cap:
        raise ParityError(f"decoder graph draws masks for {queries} queries per phrase, not the kept {cap}")
    selection, per_phrase = decoder_gate(open_session(path), feeds, raw_ref, cap, tol)
    return {"selection": selection, "bytes_per_phrase": per_phrase, "mask_queries": cap}
