"""Where a served SAM3 call's time goes: the three graphs timed apart, in one process as ``sam3`` holds them.

``python -m bench.sam3_graph_split ARTEFACT [--k 4] [--rounds 2]`` (model or service environment):
``graph_sessions.OnnxRunners`` over the artefact's graphs (the CPU flavour's sessions), one seeded
square image at the artefact's size, the first K phrases of the interior palette; per round the vision graph,
the text graph and one decoder call with all K phrases, each timed, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from server.inference import sam3_core
from server.inference.graph_sessions import OnnxRunners
from server.palettes import INTERIOR_PALETTE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("artefact", type=Path)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    manifest = json.loads((args.artefact / "manifest.json").read_text())
    runners = OnnxRunners({graph: args.artefact / path for graph, path in manifest["onnx"].items()})
    size = int(manifest["geometry"]["image_size"])
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    phrases = [p for concept in INTERIOR_PALETTE for p in concept.prompts][: args.k]
    ids, mask = sam3_core.tokenize(Tokenizer.from_file(str(args.artefact / manifest["tokenizer"])), phrases)
    threshold = np.array([0.0], np.float32)
    for round_ in range(args.rounds):
        t = time.perf_counter()
        fpn = runners.vision(image)
        vision_s = time.perf_counter() - t
        t = time.perf_counter()
        text = runners.text(ids, mask)
        text_s = time.perf_counter() - t
        t = time.perf_counter()
        out = runners.decoder(fpn, np.zeros(len(phrases), np.int64), text, mask, threshold)
        decoder_s = time.perf_counter() - t
        row: dict[str, object] = {"round": round_, "k": len(phrases), "vision_s": round(vision_s, 2)}
        row["text_s"] = round(text_s, 2)
        row |= {"decoder_s": round(decoder_s, 2), "kept": len(out["scores"]), "load_average": os.getloadavg()}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
