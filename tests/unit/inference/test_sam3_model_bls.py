"""The GPU flavour's code path of the Triton ``sam3`` model (BLS + DLPack), run on CPU.

``server/inference/model_repository/sam3/1/model.py`` is loaded with a stand-in for Triton's
``triton_python_backend_utils`` whose tensors exchange memory through the real DLPack protocol
(numpy's ``__dlpack__`` / ``np.from_dlpack``), and whose BLS ``exec`` answers as three graph models
would. What is checked is the GPU path's promise: the vision model's output tensors reach the decoder
by DLPack, sharing memory, for every decoder call; no feature tensor is read on the host; the photo
travels as uint8.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from server.inference import sam3_core
from server.inference import triton_repository as tr
from tests.unit.inference.test_sam3_core import word_tokenizer

MODEL_DIR = tr.SOURCE_ROOT / "sam3" / "1"
GEOMETRY = tr.Geometry(image_size=8, fpn_channels=2, fpn_sizes=(4, 2, 1), text_length=32, text_dim=2, num_queries=3)


class FakeTensor:
    """pb_utils.Tensor over a numpy array; counts host reads (``as_numpy``)."""

    host_reads: ClassVar[list[str]] = []

    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return True

    def as_numpy(self) -> np.ndarray:
        FakeTensor.host_reads.append(self._name)
        return self._array

    def __dlpack__(self, stream: Any = None) -> Any:
        return self._array.__dlpack__()

    def __dlpack_device__(self) -> Any:
        return self._array.__dlpack_device__()

    @classmethod
    def from_dlpack(cls, name: str, capsule_owner: Any) -> FakeTensor:
        return cls(name, np.from_dlpack(capsule_owner))


class FakeRequest:
    """A client's request to ``sam3``: its inputs, no timeout, not cancelled."""

    def __init__(self, **inputs: FakeTensor) -> None:
        self.inputs = inputs

    def timeout(self) -> int:
        return 0

    def is_cancelled(self) -> bool:
        return False


class FakeResponse:
    def __init__(self, tensors: list[FakeTensor]) -> None:
        self.tensors = {t.name(): t for t in tensors}

    def has_error(self) -> bool:
        return False


class Graphs:
    """What the three TensorRT models would answer, recording what reached them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, FakeTensor]]] = []
        self.features: list[np.ndarray] = []

    def __call__(self, model: str, inputs: dict[str, FakeTensor]) -> FakeResponse:
        self.calls.append((model, inputs))
        arrays = {k: v._array for k, v in inputs.items()}
        if model == "sam3_vision":
            image = arrays["image"]
            assert image.dtype == np.uint8 and image.shape == (1, 8, 8, 3)
            b = image.shape[0]
            self.features = [np.full((b, 2, s, s), float(image.mean()), np.float32) for s in GEOMETRY.fpn_sizes]
            return FakeResponse([FakeTensor(n, f) for n, f in zip(sam3_core.FPN_OUTPUTS, self.features, strict=True)])
        if model == "sam3_text":
            ids = arrays["input_ids"]
            return FakeResponse([FakeTensor("text_features", np.repeat(ids[:, :, None].astype(np.float32), 2, axis=2))])
        assert model == "sam3_decoder"
        k = len(arrays["image_index"])
        n = 2 * k  # two kept queries per phrase
        return FakeResponse(
            [
                FakeTensor("phrase_index", np.repeat(np.arange(k, dtype=np.int32), 2)),
                FakeTensor("query_index", np.tile(np.array([2, 0], np.int32), k)),
                FakeTensor("scores", np.full(n, 0.75, np.float32)),
                FakeTensor("boxes", np.tile(np.array([0.1, 0.2, 0.3, 0.4], np.float32), (n, 1))),
                FakeTensor("masks", np.full((n, 4, 4), 200, np.uint8)),
            ]
        )


@pytest.fixture
def model_module(tmp_path: Path) -> Iterator[tuple[types.ModuleType, Graphs]]:
    graphs = Graphs()

    class InferenceRequest:
        def __init__(self, model_name: str, inputs: list[FakeTensor], requested_output_names: list[str]) -> None:
            self.model_name, self.inputs, self.outputs = model_name, inputs, requested_output_names

        def exec(self) -> FakeResponse:
            return graphs(self.model_name, {t.name(): t for t in self.inputs})

    class InferenceResponse:
        def __init__(self, output_tensors: list[FakeTensor] | None = None, error: Any = None) -> None:
            self.output_tensors, self.error = output_tensors, error

    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = FakeTensor  # type: ignore[attr-defined]
    fake.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    fake.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    fake.TritonError = RuntimeError  # type: ignore[attr-defined]
    fake.TritonModelException = RuntimeError  # type: ignore[attr-defined]
    fake.get_output_tensor_by_name = lambda response, name: response.tensors.get(name)  # type: ignore[attr-defined]
    fake.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)  # type: ignore[attr-defined]
    fake.Logger = types.SimpleNamespace(log_info=lambda message: None)  # type: ignore[attr-defined]
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = fake
    spec = importlib.util.spec_from_file_location("sam3_triton_model", MODEL_DIR / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    FakeTensor.host_reads = []
    try:
        yield module, graphs
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved


def _initialised(module: types.ModuleType, tmp_path: Path, budget_phrases: int) -> Any:
    params = tr.Sam3Parameters(
        model_name="sam3-test",
        meaningful=False,
        score_threshold=0.5,
        decoder_bytes_per_phrase=100,
        decoder_memory_budget_bytes=100 * budget_phrases,
    )
    text = tr.sam3_config("gpu", GEOMETRY, params)
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = json_format.MessageToDict(text_format.Parse(text, mc.ModelConfig()), preserving_proto_field_name=True)
    version = tmp_path / "1"
    version.mkdir()
    word_tokenizer().save(str(version / "tokenizer.json"))
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    return model


def test_gpu_flavour_hands_features_to_every_decoder_call_by_dlpack(
    model_module: tuple[types.ModuleType, Graphs], tmp_path: Path
) -> None:
    module, graphs = model_module
    model = _initialised(module, tmp_path, budget_phrases=2)
    request = FakeRequest(
        image=FakeTensor("image", np.full((8, 8, 3), 9, np.uint8)),
        phrases=FakeTensor("phrases", np.array([b"wall", b"floor", b"door"], dtype=np.object_)),
    )
    (response,) = model.execute([request])
    assert response.error is None, response.error
    out = {t.name(): t._array for t in response.output_tensors}
    assert list(out) == list(sam3_core.DETECTION_OUTPUTS)
    assert out["phrase_index"].tolist() == [0, 0, 1, 1, 2, 2]  # shifted per decoder call
    assert out["masks"].dtype == np.uint8

    models = [m for m, _ in graphs.calls]
    assert models == ["sam3_vision", "sam3_text", "sam3_decoder", "sam3_decoder"]  # 3 phrases, 2 per call
    for _, inputs in graphs.calls[2:]:
        for name, features in zip(sam3_core.FPN_OUTPUTS, graphs.features, strict=True):
            assert np.shares_memory(inputs[name]._array, features), f"{name} was copied"
            assert inputs[name]._array.shape[0] == 1  # once per photo, not tiled per phrase
    assert not set(FakeTensor.host_reads) & set(sam3_core.FPN_OUTPUTS), "features were read on the host"


def test_gpu_flavour_reports_a_failing_graph_per_request(
    model_module: tuple[types.ModuleType, Graphs], tmp_path: Path
) -> None:
    module, graphs = model_module
    model = _initialised(module, tmp_path, budget_phrases=4)
    bad = FakeRequest(
        image=FakeTensor("image", np.full((8, 9, 3), 9, np.uint8)),  # not resized by the caller
        phrases=FakeTensor("phrases", np.array([b"wall"], dtype=np.object_)),
    )
    (response,) = model.execute([bad])
    assert response.error is not None and "square" in str(response.error)
    assert graphs.calls == []
