"""The model clients call: one uint8 photo and K phrases in, the detections of every phrase out.

Encode once, prompt many: ``sam3_vision`` runs once per photo, the text features of each phrase are
computed once by ``sam3_text`` and cached, and ``sam3_decoder`` runs for all K phrases in batches.
The graphs are sibling models called through BLS, so Triton's dynamic batcher merges the graph calls
of concurrent requests. Pre- and post-processing are ``sam3_core`` (shared with the in-process backend).

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


def _numpy(tensor):
    if tensor.is_cpu():
        return tensor.as_numpy()
    # A GPU model (TensorRT flavour) may answer in device memory: move it to the host through DLPack.
    import torch

    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()


class RequestAbandoned(Exception):
    """The client gave up on the request: its remaining graph calls are skipped."""


class _BlsRunners:
    """sam3_core.GraphRunners over BLS calls to the sibling graph models, for one request."""

    def __init__(self, request):
        self.request = request
        timeout_us = request.timeout()  # the client's remaining deadline, sent with the request (0: none)
        self.deadline_ns = time.monotonic_ns() + timeout_us * 1000 if timeout_us else 0
        self.calls = 0

    def _check_wanted(self, model):
        if self.request.is_cancelled():
            raise RequestAbandoned(f"cancelled by the client before {model} (after {self.calls} graph calls)")
        if self.deadline_ns and time.monotonic_ns() > self.deadline_ns:
            raise RequestAbandoned(f"past its timeout before {model} (after {self.calls} graph calls)")

    def _call(self, model, inputs, outputs):
        self._check_wanted(model)
        self.calls += 1
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
            requested_output_names=outputs,
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
        return [_numpy(pb_utils.get_output_tensor_by_name(response, name)) for name in outputs]

    def vision(self, pixel_values):
        return tuple(self._call("sam3_vision", {"pixel_values": pixel_values}, ["fpn0", "fpn1", "fpn2"]))

    def text(self, input_ids, attention_mask):
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._call("sam3_text", feeds, ["text_features"])[0]

    def decoder(self, fpn, text_features, attention_mask):
        feeds = {"fpn0": fpn[0], "fpn1": fpn[1], "fpn2": fpn[2], "text_features": text_features}
        feeds["attention_mask"] = attention_mask
        names = list(sam3_core.DECODER_OUTPUTS)
        return dict(zip(names, self._call("sam3_decoder", feeds, names), strict=True))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.image_size = int(params["image_size"])
        self.decoder_batch = int(params["decoder_batch"])
        self.default_threshold = float(params["score_threshold"])
        self.cache = sam3_core.TextFeatureCache(int(params["text_cache_size"]))
        meaningful = params.get("meaningful") == "true"
        pb_utils.Logger.log_info(
            f"sam3: serving {params['model_name']} (image {self.image_size}px)"
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
            runners=_BlsRunners(request),
            tokenizer=self.tokenizer,
            cache=self.cache,
            image_size=self.image_size,
            score_threshold=threshold,
            decoder_batch=self.decoder_batch,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("phrase_index", found.phrase_index),
                pb_utils.Tensor("query_index", found.query_index),
                pb_utils.Tensor("scores", found.scores),
                pb_utils.Tensor("boxes", found.boxes),
                pb_utils.Tensor("masks", found.masks),
            ]
        )
