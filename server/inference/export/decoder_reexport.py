"""Replace only the decoder graph of an existing artefact with the current export code, gated.

``python -m server.inference.export.decoder_reexport --checkpoint DIR --source ARTEFACT --data-dir OUT``
(model environment). When only the decoder's export changed, the vision and text graphs of an
artefact need not be exported again (at full size they are most of the 26-minute export): this
loads the checkpoint once, computes the vision and text features with the source artefact's own
ONNX graphs (seeded image, 2 prompts, as the full export's gates at that size), runs SAM3's own
detection head on them as the reference, exports the decoder, runs the decoder's gates and writes a
new artefact under the current key: the source's vision and text graphs hard-linked (copied across
file systems), the new decoder, the manifest updated (``decoder_reexport`` says from what, with each
stage's time and peak RSS). Nothing is written when a gate fails (exit code 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.inference import sam3_core
from server.inference.export.checkpoints import TINY_SEED
from server.inference.export.decoder_export import export_decoder, gate_decoder
from server.inference.export.gates import ONNX_MAX_ABS_DIFF, exit_status
from server.inference.export.graphs import EXPORT_SHAPE, Examples, graph_modules, open_session
from server.inference.export.memory import Stage
from server.inference.export.sam3_export import (
    EXPORT_CODE_VERSION,
    artifact_dir,
    decoder_floor_bytes,
    geometry_of,
)

PROMPTS = 2
"""Prompts of the gate (one photo): the full export's gate size for models over 1 GiB."""

log = logging.getLogger("export")


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        try:
            os.link(item, target / item.name)
        except OSError:  # another file system
            shutil.copy2(item, target / item.name)


def reexport_decoder(checkpoint: Path, source: Path, out: Path, tol: float = ONNX_MAX_ABS_DIFF) -> dict[str, Any]:
    """The new artefact's manifest; the artefact is moved into ``out`` only when every gate passed."""
    import torch
    from transformers import Sam3Model

    manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text())
    cap = int(manifest["max_detections"])
    started = time.perf_counter()
    stages: dict[str, dict[str, float]] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        torch.manual_seed(TINY_SEED)
        with Stage(stages, "load"):
            model = Sam3Model.from_pretrained(
                str(checkpoint), local_files_only=True, attn_implementation="eager", dtype=torch.float32
            ).eval()
        modules = graph_modules(model, cap)
        examples = Examples(model, modules, seed=TINY_SEED)
        with Stage(stages, "reference"):
            images = examples.images(1)
            ids, mask = examples.tokens(PROMPTS)
            index = torch.zeros(PROMPTS, dtype=torch.long)
            vision = open_session(source / manifest["onnx"]["vision"])
            fpn = vision.run(list(sam3_core.FPN_OUTPUTS), {sam3_core.VISION_INPUT: images.numpy()})
            del vision
            text = open_session(source / manifest["onnx"]["text"])
            features = text.run(["text_features"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
            del text
            raw_ref = examples.run("raw", *(torch.from_numpy(f) for f in fpn), index, torch.from_numpy(features), mask)
        feeds = {
            **dict(zip(sam3_core.FPN_OUTPUTS, fpn, strict=True)),
            "image_index": index.numpy(),
            "text_features": features,
            "attention_mask": mask.numpy(),
        }
        big = sum(p.numel() for p in model.parameters()) * 4 > 1 << 30
        with Stage(stages, "export_decoder"):
            example = examples.export_inputs("decoder", EXPORT_SHAPE[0], EXPORT_SHAPE[1])
            path = export_decoder(model, modules["decoder"], example, work / "onnx" / "decoder", external_data=big)
            del example
        with Stage(stages, "gate_decoder"):
            gated = gate_decoder(path, feeds, raw_ref, cap, tol)
        geometry = geometry_of(model, [f.shape for f in fpn], int(features.shape[-1]))
        del model, modules, examples
        for graph in ("vision", "text"):
            _link_tree((source / manifest["onnx"][graph]).parent, work / Path(manifest["onnx"][graph]).parent)
        for item in source.iterdir():
            if item.name not in ("onnx", "manifest.json", "plans", "repository_gpu"):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, work / item.name)
        parity = manifest["parity"]
        parity.update(selection=gated["selection"], mask_queries=gated["mask_queries"])
        parity["onnx_decoder_max_abs_diff"] = max(g["score_max_abs_diff"] for g in gated["selection"])
        manifest.update(
            key=out.name.rsplit("-", 1)[-1],
            export_code_version=EXPORT_CODE_VERSION,
            decoder_bytes_per_phrase=max(int(gated["bytes_per_phrase"]), decoder_floor_bytes(geometry)),
            onnx={**manifest["onnx"], "decoder": str(path.relative_to(work))},
            repository_gpu=None,
            tensorrt={"built": False, "reason": "decoder re-exported alone: no TensorRT plans"},
            decoder_reexport={
                "from": source.name,
                "s": round(time.perf_counter() - started, 2),
                "peak_rss_bytes": max(int(s["peak_rss_bytes"]) for s in stages.values()),
                "stages": stages,
            },
        )
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
        log.info("decoder re-exported into %s in %.1fs", out, manifest["decoder_reexport"]["s"])
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint the source was exported from")
    parser.add_argument("--source", type=Path, required=True, help="the artefact whose vision and text graphs stay")
    parser.add_argument("--data-dir", type=Path, required=True, help="the new artefact goes to DATA_DIR/models/")
    parser.add_argument("--onnx-tol", type=float, default=ONNX_MAX_ABS_DIFF)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    checkpoint = args.checkpoint.resolve()
    out = artifact_dir(args.data_dir, checkpoint)
    return exit_status(lambda: reexport_decoder(checkpoint, args.source.resolve(), out, args.onnx_tol), out)


if __name__ == "__main__":
    raise SystemExit(main())
