"""One SAM3 graph (vision, text or decoder) run by PyTorch: a graph model of the ``torch`` flavour.

The ``graph`` parameter says which; ``torch_graphs.TorchGraph`` (copied next to this file) runs it on
the instance's device (``device: cuda`` on a KIND_GPU instance, ``cpu`` otherwise) in the configured
precision. Vision and text take the requests of a dynamic batch in one forward. Image features leave
the vision model and enter the decoder as device tensors (DLPack both ways; the decoder's config sets
``FORCE_CPU_ONLY_INPUT_TENSORS: no``); text features and detections go to the host, where ``sam3``
caches and answers them. With a ``stats_dir`` parameter the graph's counters (bytes host <-> device,
calls, items, peak device memory) are rewritten there after every execution, for benchmarks.
"""

import json
import os
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_graphs  # (copied next to this file)

FPN_OUTPUTS = ("fpn0", "fpn1", "fpn2")


def as_torch(tensor):
    """A request's input as a torch tensor where it lies (host or device), without a copy."""
    import torch

    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack())


def as_host(tensor):
    """A small input the graph takes from the host (prompts, indices) as a numpy array."""
    return tensor.as_numpy() if tensor.is_cpu() else as_torch(tensor).cpu().numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        device = params["device"]
        if device == "cuda":
            device = f"cuda:{args['model_instance_device_id']}"
        self.graph = torch_graphs.TorchGraph(
            params["graph"],
            Path(params["checkpoint"]),
            device=device,
            precision=params["precision"],
            max_detections=int(params["max_detections"]),
            code_root=Path(params["code_root"]) if params.get("code_root") else None,
            compile_mode=params.get("compile_mode", ""),
        )
        self.stats_dir = Path(params["stats_dir"]) if params.get("stats_dir") else None
        pb_utils.Logger.log_info(f"{config['name']}: PyTorch on {device}, {params['precision']}")

    def execute(self, requests):
        name = self.graph.graph
        try:
            if name == "vision":
                responses = self._vision(requests)
            elif name == "text":
                responses = self._text(requests)
            else:
                responses = [self._decoder(r) for r in requests]
        except Exception as e:  # a failed forward fails the requests of this execution, not the model
            error = pb_utils.TritonError(f"{name}: {e}")
            responses = [pb_utils.InferenceResponse(error=error) for _ in requests]
        if self.stats_dir is not None:
            self.graph.write_stats(self.stats_dir)
        return responses

    def _vision(self, requests):
        images = [pb_utils.get_input_tensor_by_name(r, "image").as_numpy() for r in requests]
        responses = []
        for levels in self.graph.vision(images):
            tensors = [pb_utils.Tensor.from_dlpack(n, t) for n, t in zip(FPN_OUTPUTS, levels, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _text(self, requests):
        ids = [pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy() for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy() for r in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("text_features", features)])
            for features in self.graph.text(ids, masks)
        ]

    def _decoder(self, request):
        def get(name):
            return pb_utils.get_input_tensor_by_name(request, name)

        fpn = [as_torch(get(n)) for n in FPN_OUTPUTS]
        host = {n: as_host(get(n)) for n in ("image_index", "text_features", "attention_mask", "score_threshold")}
        found = self.graph.decoder(
            fpn, host["image_index"], host["text_features"], host["attention_mask"], host["score_threshold"]
        )
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, v) for n, v in found.items()])
