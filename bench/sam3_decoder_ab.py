"""The detection head alone at full size: PyTorch eager vs onnxruntime decoder graphs, interleaved.

``python -m bench.sam3_decoder_ab CHECKPOINT BEFORE.onnx AFTER.onnx --ks 1,4,12 [--before-max-k 4]``
(model environment). The same seeded image features (one photo) and text features go to: the eager
head once per phrase (as ``bench.sam3_eager`` serves it), then each decoder graph once with all K
phrases (sessions built as the served model builds them: ``graph_sessions.session_options``). Per K
the three run back to back (``--rounds`` times), so load on a shared machine falls on all of them
alike; each row carries the process CPU time of the call, the load average and the call's working memory (peak RSS during the call
minus RSS before it; the kernel's high-water mark is reset per call). ``--profile`` prints
torch.profiler's top ops of the eager head at K = 1. The graph-level per-op times come from
``bench.sam3_decoder_profile`` (onnxruntime's own profiler).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from types import SimpleNamespace
from typing import Any

import numpy as np


def main() -> int:
    import onnxruntime as ort
    import torch
    from transformers import Sam3Model
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    from server.inference.export.memory import peak_rss_bytes, release_memory, reset_peak_rss, rss_bytes
    from server.inference.graph_sessions import session_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkpoint")
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--ks", default="1,4,12")
    parser.add_argument("--before-max-k", type=int, default=4, help="the old graph holds ~0.75 GB per phrase")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    model = Sam3Model.from_pretrained(args.checkpoint, local_files_only=True, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    fpn = [rng.standard_normal((1, 256, s, s), dtype=np.float32) for s in (288, 144, 72)]
    text = rng.standard_normal((max(ks), 32, 256), dtype=np.float32)
    encoding = model.vision_encoder.neck.position_encoding
    levels = tuple(torch.from_numpy(f) for f in (*fpn, fpn[2]))
    vision = Sam3VisionEncoderOutput(
        fpn_hidden_states=levels, fpn_position_encoding=tuple(encoding(f.shape, f.device, f.dtype) for f in levels)
    )

    def mask(k: int) -> np.ndarray:
        m = np.zeros((k, 32), np.int64)
        m[:, :5] = 1
        return m

    def eager(k: int) -> None:
        m = torch.from_numpy(mask(k))
        with torch.no_grad():
            for i in range(k):
                text_embeds = SimpleNamespace(pooler_output=torch.from_numpy(text[i : i + 1]))
                model(vision_embeds=vision, text_embeds=text_embeds, attention_mask=m[i : i + 1])

    sessions: dict[str, Any] = {}
    for name, path in (("before", args.before), ("after", args.after)):
        sessions[name] = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])

    def graph(name: str, k: int) -> None:
        feeds = {"fpn0": fpn[0], "fpn1": fpn[1], "fpn2": fpn[2], "image_index": np.zeros(k, np.int64)}
        feeds.update(text_features=text[:k], attention_mask=mask(k), score_threshold=np.array([0.0], np.float32))
        sessions[name].run(None, feeds)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            eager(1)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), flush=True)
    rows = []
    for k in ks:
        for round_ in range(args.rounds):
            for name in ("eager", "after", "before"):
                if name == "before" and k > args.before_max_k:
                    continue
                release_memory()
                before = rss_bytes()
                reset_peak_rss()
                t, cpu = time.perf_counter(), time.process_time()
                eager(k) if name == "eager" else graph(name, k)
                s, cpu = time.perf_counter() - t, time.process_time() - cpu
                rows.append(
                    {
                        "k": k,
                        "round": round_,
                        "path": name,
                        "s": round(s, 2),
                        "s_per_phrase": round(s / k, 2),
                        "cpu_s": round(cpu, 2),  # both cores' time: what load on the machine moves least
                        "working_bytes": peak_rss_bytes() - before,
                        "load_average": [round(x, 2) for x in os.getloadavg()],
                    }
                )
                print(rows[-1], flush=True)
    print(json.dumps({"peak_rss_bytes": peak_rss_bytes_of_process()}))
    print(json.dumps(rows))
    return 0


def peak_rss_bytes_of_process() -> int:
    """The process's peak RSS over its life (``ru_maxrss``; the per-call resets do not touch it)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    raise SystemExit(main())
