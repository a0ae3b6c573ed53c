"""PyTorch eager SAM3 on one square photo, for the Triton comparison (runs in ``.venv-model``).

``python -m bench.sam3_eager CHECKPOINT IMAGE.npy PHRASES.json OUT.json``: loads the checkpoint with
the production loader, then for each phrase set: the vision encoder once, the text encoder for the
set, and the detection head once per phrase on the cached features (how eager SAM3 serves
"encode once, prompt many" without tiling). Writes per-stage seconds; the caller samples memory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def detect_per_prompt(model: Any, vision: Any, text_features: Any, attention_mask: Any) -> list[Any]:
    """SAM3's detection head once per prompt on the cached vision output of B photos (each prompt's
    text features broadcast over the photos): eager "encode once, prompt many", no tiling."""
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    photos = int(vision.fpn_hidden_states[0].shape[0])
    outputs = []
    for i in range(int(text_features.shape[0])):
        one = Sam3VisionEncoderOutput(
            fpn_hidden_states=vision.fpn_hidden_states, fpn_position_encoding=vision.fpn_position_encoding
        )
        features = SimpleNamespace(pooler_output=text_features[i : i + 1].expand(photos, -1, -1))
        mask = attention_mask[i : i + 1].expand(photos, -1)
        outputs.append(model(vision_embeds=one, text_embeds=features, attention_mask=mask))
    return outputs


def main(argv: list[str]) -> int:
    import torch
    from transformers import Sam3Model

    from server.inference.export.graphs import normalise

    checkpoint, image_path, phrases_path, out_path = (Path(a) for a in argv)
    t0 = time.perf_counter()
    model = Sam3Model.from_pretrained(str(checkpoint), local_files_only=True, dtype=torch.float32).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    load_s = time.perf_counter() - t0
    image = torch.from_numpy(np.load(image_path))[None]
    rows = []
    for phrases in json.loads(phrases_path.read_text()):
        with torch.no_grad():
            t0 = time.perf_counter()
            vision = model.vision_encoder(normalise(image))
            t1 = time.perf_counter()
            tokens = tokenizer(phrases, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
            text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            t2 = time.perf_counter()
            detect_per_prompt(model, vision, text.pooler_output, tokens["attention_mask"])
            t3 = time.perf_counter()
        rows.append(
            {"k": len(phrases), "vision_s": t1 - t0, "text_s": t2 - t1, "decoder_s": t3 - t2, "total_s": t3 - t0}
        )
    Path(out_path).write_text(json.dumps({"load_s": load_s, "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
