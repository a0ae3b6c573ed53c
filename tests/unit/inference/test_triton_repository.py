"""The generated Triton configs parse into Triton's ModelConfig protobuf and match the committed ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from server.inference import triton_repository as tr

TINY = tr.Geometry(image_size=112, fpn_channels=32, fpn_sizes=(32, 16, 8), text_length=32, text_dim=32, num_queries=8)
TINY_PARAMS = tr.Sam3Parameters(model_name="sam3-tiny", meaningful=False, score_threshold=0.0)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("flavour", tr.FLAVOURS)
@pytest.mark.parametrize(("geometry", "params"), [(tr.FULL_SIZE, tr.REFERENCE), (TINY, TINY_PARAMS)])
def test_every_config_parses(flavour: tr.Flavour, geometry: tr.Geometry, params: tr.Sam3Parameters) -> None:
    configs = {name: parse(text) for name, text in tr.model_configs(flavour, geometry, params).items()}
    assert set(configs) == {"sam3", "sam3_vision", "sam3_text", "sam3_decoder"}
    for name, config in configs.items():
        assert config.name == name

    sam3 = configs["sam3"]
    assert sam3.backend == "python" and sam3.max_batch_size == 0
    inputs = {t.name: t for t in sam3.input}
    assert inputs["image"].data_type == mc.TYPE_UINT8  # photos travel as uint8, never float32
    assert inputs["phrases"].data_type == mc.TYPE_STRING and inputs["score_threshold"].optional
    masks = next(t for t in sam3.output if t.name == "masks")
    assert masks.data_type == mc.TYPE_UINT8 and list(masks.dims) == [-1, geometry.mask_size, geometry.mask_size]
    assert sam3.parameters["meaningful"].string_value == ("true" if params.meaningful else "false")

    vision = configs["sam3_vision"]
    batching = tr.VISION_BATCHING if flavour == "cpu" else tr.GPU_VISION_BATCHING
    assert vision.max_batch_size == batching.max_batch_size
    assert list(vision.dynamic_batching.preferred_batch_size) == list(batching.preferred_batch_sizes)
    assert vision.dynamic_batching.max_queue_delay_microseconds == batching.max_queue_delay_us
    assert list(vision.input[0].dims) == [3, geometry.image_size, geometry.image_size]
    for graph in ("sam3_vision", "sam3_text", "sam3_decoder"):
        config = configs[graph]
        assert config.HasField("dynamic_batching")
        if flavour == "cpu":
            assert config.backend == "python" and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
        else:
            assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
            assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    decoder_inputs = [t.name for t in configs["sam3_decoder"].input]
    assert decoder_inputs == ["fpn0", "fpn1", "fpn2", "text_features", "attention_mask"]


@pytest.mark.parametrize("flavour", tr.FLAVOURS)
def test_committed_reference_configs_are_up_to_date(flavour: tr.Flavour) -> None:
    for model, text in tr.model_configs(flavour, tr.FULL_SIZE, tr.REFERENCE).items():
        committed = tr.config_path(tr.SOURCE_ROOT, model, flavour)
        assert committed.read_text() == text, f"{committed} is stale: run `make model-configs`"


def test_assemble_builds_a_self_contained_cpu_repository(tmp_path: Path) -> None:
    graphs = {}
    for graph in tr.GRAPHS:
        folder = tmp_path / "onnx" / graph
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(graph.encode())
        graphs[graph] = folder
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    repo = tr.assemble(tmp_path / "repo", "cpu", TINY, TINY_PARAMS, graphs, tokenizer)
    for graph in tr.GRAPHS:
        version = repo / f"sam3_{graph}" / "1"
        assert (version / "model.onnx").read_bytes() == graph.encode()
        assert "onnxruntime" in (version / "model.py").read_text()
        assert not (version / "model.py").is_symlink()
    sam3 = repo / "sam3" / "1"
    assert {p.name for p in sam3.iterdir()} == {"model.py", "sam3_core.py", "tokenizer.json"}
    assert (sam3 / "sam3_core.py").read_text() == Path(tr.__file__).with_name("sam3_core.py").read_text()
    assert parse((repo / "sam3" / "config.pbtxt").read_text()).parameters["model_name"].string_value == "sam3-tiny"
