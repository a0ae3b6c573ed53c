"""The model clients call: one square uint8 image and K phrases in, the kept detections of every phrase out.

Encode once, prompt many: the vision graph runs once per photo, the text features of each phrase are
computed once and cached, and the decoder takes the photo's features once per call for a chunk of
phrases sized by a memory budget, broadcasting them inside the graph; selection (score, top-K,
threshold) is inside the decoder graph, so only kept queries come back.

Where the graphs run is the ``graphs`` parameter:

- ``in_process`` (CPU flavour): onnxruntime sessions in this process (``graph_sessions``): the image
  features never leave it.
- ``bls`` (GPU flavour): the sibling TensorRT models through BLS. Their outputs are handed on as
  Triton tensors (DLPack, no host copy: ``FORCE_CPU_ONLY_INPUT_TENSORS: no``); only the kept
  detections are brought to the host.

Work nobody waits for is not done: before each graph call the request is checked, and when its client
has cancelled it (gRPC deadline, closed call) or its own timeout has passed, the remaining graph calls
are skipped and the request ends with a CANCELLED error.
"""

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sam3_core  # (copied next to this file)

GRAPH_FILES = {graph: os.path.join("onnx", graph, "model.onnx") for graph in ("vision", "text", "decoder")}


def to_host(tensor):
    """A BLS output as a numpy array: as is when in host memory, else copied from the device via DLPack."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    import torch  # only a GPU host has device tensors, and torch to read them

    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()


class RequestAbandoned(Exception):
    """The client gave up on the request: its remaining graph calls are skipped."""


class BlsRunners:
    """sam3_core.GraphRunners over BLS calls to the sibling graph models; image features stay Triton
    tensors (in device memory on a GPU) from the vision model's response to the decoder's request."""

    def _call(self, model, inputs, outputs):
        request = pb_utils.InferenceRequest(model_name=model, inputs=inputs, requested_output_names=outputs)
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, name) for name in outputs]

    @staticmethod
    def _host(name, value):
        return pb_utils.Tensor(name, np.ascontiguousarray(value))

    def vision(self, image):
        return tuple(self._call("sam3_vision", [self._host("image", image)], list(sam3_core.FPN_OUTPUTS)))

    def text(self, input_ids, attention_mask):
        inputs = [self._host("input_ids", input_ids), self._host("attention_mask", attention_mask)]
        return to_host(self._call("sam3_text", inputs, ["text_features"])[0])

    def decoder(self, fpn, image_index, text_features, attention_mask, score_threshold):
        # The same feature tensors for every chunk of phrases: passed by DLPack, never copied or tiled.
        inputs = [pb_utils.Tensor.from_dlpack(name, t) for name, t in zip(sam3_core.FPN_OUTPUTS, fpn, strict=True)]
        inputs += [
            self._host("image_index", image_index),
            self._host("text_features", text_features),
            self._host("attention_mask", attention_mask),
            self._host("score_threshold", score_threshold),
        ]
        names = list(sam3_core.DETECTION_OUTPUTS)
        return {n: to_host(t) for n, t in zip(names, self._call("sam3_decoder", inputs, names), strict=True)}


class WantedRunners:
    """The model's runners for one request: before each graph call, the request must still be wanted."""

    def __init__(self, runners, request):
        self.runners = runners
        self.request = request
        timeout_us = request.timeout()  # the client's remaining deadline, sent with the request (0: none)
        self.deadline_ns = time.monotonic_ns() + timeout_us * 1000 if timeout_us else 0
        self.calls = 0

    def _check_wanted(self, graph):
        if self.request.is_cancelled():
            raise RequestAbandoned(f"cancelled by the client before {graph} (after {self.calls} graph calls)")
        if self.deadline_ns and time.monotonic_ns() > self.deadline_ns:
            raise RequestAbandoned(f"past its timeout before {graph} (after {self.calls} graph calls)")
        self.calls += 1

    def vision(self, image):
        self._check_wanted("vision")
        return self.runners.vision(image)

    def text(self, input_ids, attention_mask):
        self._check_wanted("text")
        return self.runners.text(input_ids, attention_mask)

    def decoder(self, fpn, image_index, text_features, attention_mask, score_threshold):
        self._check_wanted("decoder")
        return self.runners.decoder(fpn, image_index, text_features, attention_mask, score_threshold)


def make_runners(params, here):
    if params["graphs"] == "bls":
        return BlsRunners()
    import graph_sessions  # (copied next to this file; needs onnxruntime)

    files = {graph: os.path.join(here, path) for graph, path in GRAPH_FILES.items()}
    return graph_sessions.OnnxRunners(files, int(params.get("intra_op_threads", "0")))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.default_threshold = float(params["score_threshold"])
        self.phrases_per_call = sam3_core.phrases_per_call(
            int(params["decoder_memory_budget_bytes"]), int(params["decoder_bytes_per_phrase"])
        )
        self.cache = sam3_core.TextFeatureCache(int(params["text_cache_size"]))
        self.runners = make_runners(params, here)
        meaningful = params.get("meaningful") == "true"
        pb_utils.Logger.log_info(
            f"sam3: serving {params['model_name']} (image {params['image_size']}px, graphs {params['graphs']}, "
            f"{self.phrases_per_call} phrases per decoder call)"
            + ("" if meaningful else ": random weights, masks are NOT meaningful")
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._segment(request))
            except RequestAbandoned as e:
                pb_utils.Logger.log_info(f"sam3: request abandoned, remaining graph calls skipped: {e}")
                error = pb_utils.TritonError(f"sam3: {e}", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as e:  # one bad request must not fail the others of the batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"sam3: {e}")))
        return responses

    def _segment(self, request):
        image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
        raw = pb_utils.get_input_tensor_by_name(request, "phrases").as_numpy().reshape(-1)
        phrases = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in raw]
        given = pb_utils.get_input_tensor_by_name(request, "score_threshold")
        threshold = float(given.as_numpy().reshape(-1)[0]) if given is not None else self.default_threshold
        found = sam3_core.run_sam3(
            image,
            phrases,
            runners=WantedRunners(self.runners, request),
            tokenizer=self.tokenizer,
            cache=self.cache,
            score_threshold=threshold,
            phrases_per_call=self.phrases_per_call,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, value) for name, value in found.arrays().items()]
        )
