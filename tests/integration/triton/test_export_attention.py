"""The decoder graph's attention (query chunks; the fused op where there is no mask) computes what
SAM3's own attention does.

Runs in the model environment (torch, transformers) through its interpreter. At tiny size no
attention has more than a few dozen queries, so the chunk is shrunk to make every path chunk.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from server.inference.artifacts import REPO_ROOT, model_python

pytestmark = pytest.mark.integration

PROBE = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import Sam3Model
    from transformers.models.sam3.modeling_sam3 import eager_attention_forward
    from server.inference.export import attention as A
    from server.inference.export import checkpoints as C, graphs as E
    from server.inference.export.fused_attention import fused_attention

    A.QUERY_CHUNK = int(sys.argv[1])
    register = sys.argv[2] == "1"
    if not register:  # the guard under test: without the eager masks transformers passes the raw 2D mask
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
        ALL_MASK_ATTENTION_FUNCTIONS.register = lambda *a: None
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (11, 13, 13))
    additive = torch.randn(2, 1, 11, 13, generator=g)
    padding = torch.randn(2, 1, 1, 13, generator=g)
    module = torch.nn.Module().eval()
    attention = {}
    for name, m in (("none", None), ("per_query", additive), ("per_key", padding)):
        want, _ = eager_attention_forward(module, q, k, v, m, scaling=0.3)
        got, _ = A.query_chunked_attention(module, q, k, v, m, scaling=0.3)
        attention[name] = float((got - want).abs().max())
    want, _ = eager_attention_forward(module, q, k, v, None, scaling=0.3)
    got, _ = fused_attention(module, q, k, v, None, scaling=0.3)
    attention["fused"] = float((got - want).abs().max())

    model = Sam3Model.from_pretrained(
        str(C.build_checkpoint(__import__("pathlib").Path(sys.argv[3]), "tiny")),
        local_files_only=True, attn_implementation="eager", dtype=torch.float32,
    ).eval()
    modules = E.graph_modules(model, 4)
    ex = E.Examples(model, modules, seed=0)
    feeds = ex.export_inputs("decoder", 1, 3)
    feeds["attention_mask"][0, 2:] = 0  # padding that the text cross-attention must honour
    want = ex.run("raw", *list(feeds.values())[:-1])
    parts = [m.config._attn_implementation for p in A.DETECTOR_PARTS for m in getattr(model, p).modules() if hasattr(m, "config")]
    with A.detector_attention(model, fused=False):
        inside = {m.config._attn_implementation for p in A.DETECTOR_PARTS for m in getattr(model, p).modules() if hasattr(m, "config")}
        vision_inside = model.vision_encoder.config._attn_implementation
        got = ex.run("raw", *list(feeds.values())[:-1])
    with A.detector_attention(model, fused=True):
        fused = ex.run("raw", *list(feeds.values())[:-1])
    after = [m.config._attn_implementation for p in A.DETECTOR_PARTS for m in getattr(model, p).modules() if hasattr(m, "config")]
    print(json.dumps({
        "attention": attention,
        "decoder": max(float(abs(a - b).max()) for a, b in zip(got, want)),
        "decoder_fused": max(float(abs(a - b).max()) for a, b in zip(fused, want)),
        "inside": sorted(inside), "vision_inside": vision_inside, "restored": after == parts,
    }))
    """
)


def _probe(tmp_path: object, chunk: int, register_masks: bool) -> dict[str, object]:
    run = subprocess.run(
        [str(model_python()), "-c", PROBE, str(chunk), "1" if register_masks else "0", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return result


def test_chunked_and_fused_attention_equal_sam3_attention(tmp_path: object) -> None:
    result = _probe(tmp_path, chunk=4, register_masks=True)
    attention = result["attention"]
    assert isinstance(attention, dict)
    assert all(diff <= 1e-6 for diff in attention.values()), attention
    assert isinstance(result["decoder"], float) and result["decoder"] <= 1e-6  # measured: 2e-10
    assert isinstance(result["decoder_fused"], float) and result["decoder_fused"] <= 1e-6
    assert result["inside"] == ["s3_detector_attention"]
    assert result["vision_inside"] == "eager"  # the vision graph keeps its own attention
    assert result["restored"] is True


def test_chunked_attention_without_eager_masks_is_caught(tmp_path: object) -> None:
    # transformers builds no mask for an attention name it does not know: the text padding is then
    # added as 0/1 logits, and the decoder's outputs move (measured: 6e-5 with tiny random weights,
    # 5 orders of magnitude above the chunked attention's own difference).
    result = _probe(tmp_path, chunk=4, register_masks=False)
    assert isinstance(result["decoder"], float) and result["decoder"] > 1e-5
