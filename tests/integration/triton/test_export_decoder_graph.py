"""The served decoder graph draws masks for the kept queries only, and still selects what SAM3 does.

The probe runs in the model environment (torch, transformers, onnx) through its interpreter, on the
tiny export (8 queries, a top-K of 4): the exported graph's mask product has 4 queries per prompt;
the selecting decoder equals SAM3's own head (every query's mask) followed by the selection; and a
decoder that draws every query's mask, as the graph did before, is refused by the export's gate.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from server.inference.artifacts import REPO_ROOT, ModelArtifact, model_python

pytestmark = pytest.mark.integration

PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import onnx, torch
    from transformers import Sam3Model
    from server.inference.export import graphs as G
    from server.inference.export.decoder_export import export_decoder, gate_decoder
    from server.inference.export.decoder_graph import mask_query_count
    from server.inference.export.gates import ParityError
    from server.inference.export.selection import gate_thresholds

    artefact, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((artefact / "manifest.json").read_text())
    cap = manifest["max_detections"]
    served = onnx.load(str(artefact / manifest["onnx"]["decoder"]), load_external_data=False)
    model = Sam3Model.from_pretrained(
        str(artefact / "checkpoint"), local_files_only=True, attn_implementation="eager", dtype=torch.float32
    ).eval()
    modules = G.graph_modules(model, cap)

    class EveryQueryMasks(torch.nn.Module):
        # The decoder graph as it was: SAM3's head draws all queries' masks, the selection comes after.
        def __init__(self, raw):
            super().__init__()
            self.raw = raw

        def forward(self, fpn0, fpn1, fpn2, image_index, text_features, attention_mask, score_threshold):
            masks, boxes, logits, presence = self.raw(fpn0, fpn1, fpn2, image_index, text_features, attention_mask)
            top, query = torch.topk(torch.sigmoid(logits) * torch.sigmoid(presence), k=cap, dim=1)
            phrase, rank = torch.nonzero(top >= score_threshold, as_tuple=True)
            kept = query[phrase, rank]
            probs = torch.sigmoid(masks[phrase, kept])
            return phrase.to(torch.int32), kept.to(torch.int32), top[phrase, rank], boxes[phrase, kept], torch.round(probs * 255.0).to(torch.uint8)

    every = EveryQueryMasks(modules["raw"]).eval()
    ex = G.Examples(model, modules, seed=1)
    feeds = ex.export_inputs("decoder", 2, 5)
    feeds["attention_mask"][1, 3:] = 0
    raw = ex.run("raw", *list(feeds.values())[:-1])
    equal = []
    for threshold in gate_thresholds(raw, cap):
        feeds["score_threshold"] = torch.tensor([threshold])
        ours = ex.run("decoder", *feeds.values())
        with torch.no_grad():
            theirs = [t.numpy() for t in every(*feeds.values())]
        equal.append({
            "threshold": threshold,
            "kept": int(len(ours[0])),
            "same_queries": bool((ours[0] == theirs[0]).all() and (ours[1] == theirs[1]).all()),
            "score": float(abs(ours[2] - theirs[2]).max(initial=0.0)),
            "box": float(abs(ours[3] - theirs[3]).max(initial=0.0)),
            "mask_levels": int(abs(ours[4].astype(int) - theirs[4].astype(int)).max(initial=0)),
        })

    example = ex.export_inputs("decoder", 2, 3)
    path = export_decoder(model, every, example, scratch / "every", external_data=False)
    gate_feeds = {k: v.numpy() for k, v in feeds.items() if k != "score_threshold"}
    try:
        gate_decoder(path, gate_feeds, raw, cap, 1e-4)
        refused = None
    except ParityError as e:
        refused = str(e)
    print(json.dumps({
        "cap": cap,
        "queries": int(model.config.detr_decoder_config.num_queries),
        "served_mask_queries": mask_query_count(served),
        "served_fused_attention": sum(n.op_type == "MultiHeadAttention" and n.domain == "com.microsoft" for n in served.graph.node),
        "every_mask_queries": mask_query_count(onnx.load(str(path), load_external_data=False)),
        "refused": refused,
        "equal": equal,
    }))
    """
)


@pytest.fixture(scope="module")
def probe(tiny_artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scratch: Path = tmp_path_factory.mktemp("decoder_graph")
    run = subprocess.run(
        [str(model_python()), "-c", PROBE, str(tiny_artifact.root), str(scratch)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return result


def test_served_decoder_draws_masks_for_the_kept_queries_only(
    probe: dict[str, Any], tiny_artifact: ModelArtifact
) -> None:
    assert probe["cap"] == tiny_artifact.max_detections == 4
    assert probe["served_mask_queries"] == probe["cap"] < probe["queries"] == 8
    manifest = json.loads((tiny_artifact.root / "manifest.json").read_text())
    assert manifest["parity"]["mask_queries"] == probe["cap"]
    # The DETR encoder's and decoder's self-attention (no mask): onnxruntime's fused attention.
    assert probe["served_fused_attention"] == 2


def test_selecting_decoder_equals_sam3_head_then_selection(probe: dict[str, Any]) -> None:
    everything, some = probe["equal"]
    assert everything["kept"] == 5 * probe["cap"] and 0 < some["kept"] < everything["kept"]
    for check in probe["equal"]:
        assert check["same_queries"], check
        assert check["score"] <= 1e-6 and check["box"] <= 1e-6, check
        assert check["mask_levels"] <= 1, check  # the folded 1x1 projection: rounding of the last bit


def test_a_decoder_drawing_every_querys_mask_is_refused(probe: dict[str, Any]) -> None:
    # The guard under test: the graph as it was (masks of all 8 queries, then the top 4).
    assert probe["every_mask_queries"] == probe["queries"]
    assert probe["refused"] is not None and "draws masks for 8 queries" in probe["refused"]
