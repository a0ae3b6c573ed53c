"""One exported SAM3 graph (vision, text or decoder) run by onnxruntime inside Triton's python backend.

The CPU flavour of the graph models: the same file serves all three (``sam3_text`` and
``sam3_decoder`` link to it). Triton's dynamic batcher hands over several requests at once; they are
concatenated along the batch axis, run as one onnxruntime call, and split back.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        threads = int(config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", "0"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0 = onnxruntime's default (all cores)
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        pb_utils.Logger.log_info(f"{config['name']}: onnxruntime {ort.__version__} loaded {path}")

    def execute(self, requests):
        columns = {name: [] for name in self.inputs}
        sizes = []
        for request in requests:
            for name in self.inputs:
                columns[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(columns[self.inputs[0]][-1].shape[0])
        feeds = {name: np.concatenate(parts, axis=0) for name, parts in columns.items()}
        results = self.session.run(self.outputs, feeds)
        responses, start = [], 0
        for n in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(r[start : start + n]))
                for name, r in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses
