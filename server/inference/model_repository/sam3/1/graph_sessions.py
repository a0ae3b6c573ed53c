"""The three exported SAM3 graphs as onnxruntime sessions in one process (``sam3_core.GraphRunners``).

Used by the in-process backend (``onnx_local``) and by the CPU flavour of the Triton ``sam3`` model,
which runs the graphs in its own process so that image features never cross a process boundary.
Only numpy and onnxruntime: the module is copied as-is into the Triton model directory.
Memory arenas are off: onnxruntime then returns a graph's working memory after each call instead of
keeping its peak (the vision graph's peak is gigabytes at full size and would add to the decoder's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

GRAPH_NAMES = ("vision", "text", "decoder")


def session_options(intra_op_threads: int = 0) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads  # 0 = onnxruntime's default (all cores)
    options.enable_cpu_mem_arena = False
    return options


class OnnxRunners:
    """sam3_core.GraphRunners over three onnxruntime sessions; ``files`` maps each graph to its model.onnx."""

    def __init__(self, files: Mapping[str, Path], intra_op_threads: int = 0) -> None:
        options = session_options(intra_op_threads)
        self._sessions = {
            graph: ort.InferenceSession(str(files[graph]), options, providers=["CPUExecutionProvider"])
            for graph in GRAPH_NAMES
        }
        self._outputs = {graph: [o.name for o in s.get_outputs()] for graph, s in self._sessions.items()}

    def _run(self, graph: str, feeds: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
        results = self._sessions[graph].run(self._outputs[graph], feeds)
        return dict(zip(self._outputs[graph], results, strict=True))

    def vision(self, image: npt.NDArray[np.uint8]) -> tuple[Any, Any, Any]:
        f = self._run("vision", {"image": image})
        return f["fpn0"], f["fpn1"], f["fpn2"]

    def text(self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]) -> Any:
        return self._run("text", {"input_ids": input_ids, "attention_mask": attention_mask})["text_features"]

    def decoder(
        self,
        fpn: tuple[Any, Any, Any],
        image_index: npt.NDArray[np.int64],
        text_features: npt.NDArray[np.float32],
        attention_mask: npt.NDArray[np.int64],
        score_threshold: npt.NDArray[np.float32],
    ) -> dict[str, npt.NDArray[Any]]:
        feeds: dict[str, Any] = {"fpn0": fpn[0], "fpn1": fpn[1], "fpn2": fpn[2], "image_index": image_index}
        feeds.update(text_features=text_features, attention_mask=attention_mask, score_threshold=score_threshold)
        return self._run("decoder", feeds)
