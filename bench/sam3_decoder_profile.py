"""Where a decoder graph spends its time: onnxruntime's own profiler, per op type and per node.

``python -m bench.sam3_decoder_profile DECODER.onnx --k 4 [--runs 2] [--prefix /tmp/prof]`` (model or
service environment). The session is built as the served ``sam3`` model builds it
(``graph_sessions.session_options``: arena off, onnxruntime's default threads and optimisation
level); the inputs are seeded features of one photo at the graph's own sizes and ``--k`` phrases.
Every run's wall time is printed; the last run is the profiled one summarised (the first pays for
first-touching its buffers like every call does with the arena off, so both are shown).
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np


def feeds_for(session: Any, k: int) -> dict[str, np.ndarray]:
    """Seeded decoder inputs: the FPN shapes read from the graph, one photo, ``k`` phrases of 5 tokens."""
    rng = np.random.default_rng(0)
    shapes = {i.name: i.shape for i in session.get_inputs()}
    feeds: dict[str, np.ndarray] = {}
    for name in ("fpn0", "fpn1", "fpn2"):
        _, channels, height, width = shapes[name]
        feeds[name] = rng.standard_normal((1, int(channels), int(height), int(width)), dtype=np.float32)
    _, length, dim = shapes["text_features"]
    feeds["image_index"] = np.zeros(k, np.int64)
    feeds["text_features"] = rng.standard_normal((k, int(length), int(dim)), dtype=np.float32)
    mask = np.zeros((k, int(length)), np.int64)
    mask[:, :5] = 1
    feeds["attention_mask"] = mask
    feeds["score_threshold"] = np.array([0.0], np.float32)
    return feeds


def summarise(events: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """Kernel time of the last ``model_run`` by op type and by node."""
    runs = [e for e in events if e.get("name") == "model_run"]
    start = runs[-1]["ts"]
    by_op: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            op = e["args"]["op_name"]
            by_op[op] += e["dur"]
            count[op] += 1
            by_node[f"{op} {e['name'].removesuffix('_kernel_time')}"] += e["dur"]
    return {
        "model_run_s": runs[-1]["dur"] / 1e6,
        "nodes_s": sum(by_op.values()) / 1e6,
        "ops": [{"op": op, "s": round(us / 1e6, 3), "n": count[op]} for op, us in by_op.most_common(top)],
        "nodes": [{"node": n, "s": round(us / 1e6, 3)} for n, us in by_node.most_common(top)],
    }


def main() -> int:
    import onnxruntime as ort

    from server.inference.graph_sessions import session_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("decoder")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--prefix", default="/tmp/s3_decoder_profile")
    args = parser.parse_args()
    options = session_options()
    options.enable_profiling = True
    options.profile_file_prefix = args.prefix
    session = ort.InferenceSession(args.decoder, options, providers=["CPUExecutionProvider"])
    feeds = feeds_for(session, args.k)
    walls = []
    for _ in range(args.runs):
        t = time.perf_counter()
        out = session.run(None, feeds)
        walls.append(round(time.perf_counter() - t, 2))
    report = summarise(json.loads(Path(session.end_profiling()).read_text()), args.top)
    report.update(
        decoder=args.decoder,
        k=args.k,
        run_s=walls,
        kept=int(out[0].shape[0]),
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
