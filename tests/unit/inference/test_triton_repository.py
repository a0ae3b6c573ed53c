"""The generated Triton configs parse into Triton's ModelConfig protobuf and match the committed ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from server.inference import sam3_core
from server.inference import torch_repository as torch_repo
from server.inference import triton_repository as tr

TINY = tr.Geometry(image_size=112, fpn_channels=32, fpn_sizes=(32, 16, 8), text_length=32, text_dim=32, num_queries=8)
TINY_PARAMS = tr.Sam3Parameters(
    model_name="sam3-tiny", meaningful=False, score_threshold=0.0, decoder_bytes_per_phrase=1000
)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("flavour", tr.FLAVOURS)
@pytest.mark.parametrize(("geometry", "params"), [(tr.FULL_SIZE, tr.REFERENCE), (TINY, TINY_PARAMS)])
def test_every_config_parses(flavour: tr.Flavour, geometry: tr.Geometry, params: tr.Sam3Parameters) -> None:
    configs = {name: parse(text) for name, text in tr.model_configs(flavour, geometry, params).items()}
    graphs = {"sam3_vision", "sam3_text", "sam3_decoder"}
    # CPU: the graphs run inside sam3 (features never cross a process); GPU: TensorRT models beside it.
    assert set(configs) == ({"sam3"} if flavour == "cpu" else {"sam3"} | graphs)
    for name, config in configs.items():
        assert config.name == name

    sam3 = configs["sam3"]
    assert sam3.backend == "python" and sam3.max_batch_size == 0
    inputs = {t.name: t for t in sam3.input}
    s = geometry.image_size
    assert inputs["image"].data_type == mc.TYPE_UINT8 and list(inputs["image"].dims) == [
        s,
        s,
        3,
    ]  # resized by the caller
    assert inputs["phrases"].data_type == mc.TYPE_STRING and inputs["score_threshold"].optional
    masks = next(t for t in sam3.output if t.name == "masks")
    assert masks.data_type == mc.TYPE_UINT8 and list(masks.dims) == [-1, geometry.mask_size, geometry.mask_size]
    assert sam3.parameters["meaningful"].string_value == ("true" if params.meaningful else "false")
    assert int(sam3.parameters["decoder_memory_budget_bytes"].string_value) == params.decoder_memory_budget_bytes
    if flavour == "cpu":
        assert sam3.parameters["graphs"].string_value == "in_process"
        assert sam3.instance_group[0].count == 1
        return
    assert sam3.parameters["graphs"].string_value == "bls"
    assert sam3.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"  # device tensors through BLS

    vision = configs["sam3_vision"]
    assert vision.max_batch_size == tr.GPU_VISION_BATCHING.max_batch_size
    assert list(vision.dynamic_batching.preferred_batch_size) == list(tr.GPU_VISION_BATCHING.preferred_batch_sizes)
    assert vision.dynamic_batching.max_queue_delay_microseconds == tr.GPU_VISION_BATCHING.max_queue_delay_us
    assert vision.input[0].data_type == mc.TYPE_UINT8 and list(vision.input[0].dims) == [s, s, 3]
    for graph in graphs:
        config = configs[graph]
        assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
        assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    decoder = configs["sam3_decoder"]
    assert decoder.max_batch_size == 0 and not decoder.HasField("dynamic_batching")
    assert [t.name for t in decoder.input] == list(sam3_core.DECODER_INPUTS)
    assert [t.name for t in decoder.output] == [t.name for t in sam3.output] == list(sam3_core.DETECTION_OUTPUTS)
    assert list(decoder.input[0].dims) == [-1, geometry.fpn_channels, geometry.fpn_sizes[0], geometry.fpn_sizes[0]]


@pytest.mark.parametrize("flavour", tr.FLAVOURS)
def test_committed_reference_configs_are_up_to_date(flavour: tr.Flavour) -> None:
    for model, text in tr.model_configs(flavour, tr.FULL_SIZE, tr.REFERENCE).items():
        committed = tr.config_path(tr.SOURCE_ROOT, model, flavour)
        assert committed.read_text() == text, f"{committed} is stale: run `make model-configs`"


def _graph_folders(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    graphs = {}
    for graph in tr.GRAPHS:
        folder = tmp_path / "onnx" / graph
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(graph.encode())
        (folder / "model.onnx.data").write_bytes(b"weights")
        graphs[graph] = folder
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    return graphs, tokenizer


def test_assemble_builds_a_self_contained_cpu_repository(tmp_path: Path) -> None:
    graphs, tokenizer = _graph_folders(tmp_path)
    repo = tr.assemble(tmp_path / "repo", "cpu", TINY, TINY_PARAMS, graphs, tokenizer)
    sam3 = repo / "sam3" / "1"
    assert sorted(p.name for p in repo.iterdir()) == ["repository.json", "sam3"]
    for graph in tr.GRAPHS:
        assert (sam3 / "onnx" / graph / "model.onnx").read_bytes() == graph.encode()
        assert (sam3 / "onnx" / graph / "model.onnx.data").stat().st_ino == (
            graphs[graph] / "model.onnx.data"
        ).stat().st_ino
    assert {p.name for p in sam3.iterdir()} == {*tr.SAM3_CODE, "tokenizer.json", "onnx"}
    for name in tr.SAM3_CODE:
        assert not (sam3 / name).is_symlink()
    assert (sam3 / "sam3_core.py").read_text() == Path(tr.__file__).with_name("sam3_core.py").read_text()
    assert (sam3 / "graph_sessions.py").read_text() == Path(tr.__file__).with_name("graph_sessions.py").read_text()
    assert parse((repo / "sam3" / "config.pbtxt").read_text()).parameters["model_name"].string_value == "sam3-tiny"


def test_assemble_places_gpu_plans_in_their_models(tmp_path: Path) -> None:
    plans = {}
    for graph in tr.GRAPHS:
        plans[graph] = tmp_path / f"{graph}.plan"
        plans[graph].write_bytes(graph.encode())
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    repo = tr.assemble(tmp_path / "repo", "gpu", TINY, TINY_PARAMS, plans, tokenizer)
    for graph in tr.GRAPHS:
        assert (repo / f"sam3_{graph}" / "1" / "model.plan").read_bytes() == graph.encode()
    assert not (repo / "sam3" / "1" / "onnx").exists()


def test_torch_flavour_configs_parse_and_serve_the_graphs_with_pytorch(tmp_path: Path) -> None:
    runtime = torch_repo.TorchRuntime(checkpoint=tmp_path / "checkpoint", device="cuda", stats_dir=tmp_path / "stats")
    configs = {
        name: parse(text) for name, text in torch_repo.torch_model_configs(tr.FULL_SIZE, tr.REFERENCE, runtime).items()
    }
    assert set(configs) == set(tr.served_models("torch"))
    sam3 = configs["sam3"]
    assert sam3.parameters["graphs"].string_value == tr.GRAPHS_BLS  # the GPU flavour's BLS model
    assert sam3.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"
    assert sam3.instance_group[0].count == tr.SAM3_INSTANCES["torch"]
    gpu = {name: parse(text) for name, text in tr.model_configs("gpu", tr.FULL_SIZE, tr.REFERENCE).items()}
    for graph in tr.GRAPHS:
        config, trt = configs[tr.graph_model(graph)], gpu[tr.graph_model(graph)]
        assert config.backend == "python" and not config.platform
        assert list(config.input) == list(trt.input) and list(config.output) == list(trt.output)  # same graph
        assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert params["graph"] == graph and params["device"] == "cuda" and params["precision"] == "bfloat16"
        assert params["checkpoint"] == str(runtime.checkpoint) and params["stats_dir"] == str(runtime.stats_dir)
        assert params["max_detections"] == str(tr.REFERENCE.max_detections)
    vision = configs["sam3_vision"]
    assert vision.max_batch_size == torch_repo.TORCH_VISION_BATCHING.max_batch_size and vision.HasField(
        "dynamic_batching"
    )
    decoder = configs["sam3_decoder"]
    assert decoder.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"  # features stay on the device
    assert "FORCE_CPU_ONLY_INPUT_TENSORS" not in vision.parameters
    assert runtime.triton_args() == (f"--cuda-memory-pool-byte-size=0:{torch_repo.CUDA_POOL_BYTES}",)

    on_cpu = torch_repo.TorchRuntime(checkpoint=tmp_path, device="cpu", precision="float32")
    for text in list(torch_repo.torch_model_configs(TINY, TINY_PARAMS, on_cpu).values())[1:]:
        assert parse(text).instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert on_cpu.triton_args() == ()


def test_assemble_torch_copies_the_graph_code_into_every_graph_model(tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    runtime = torch_repo.TorchRuntime(checkpoint=tmp_path / "checkpoint", device="cpu", precision="float32")
    repo = torch_repo.assemble_torch(tmp_path / "repo", TINY, TINY_PARAMS, runtime, tokenizer)
    assert sorted(p.name for p in repo.iterdir()) == sorted(["repository.json", *tr.served_models("torch")])
    for graph in tr.GRAPHS:
        folder = repo / tr.graph_model(graph) / "1"
        assert (folder / "model.py").read_text() == (tr.SOURCE_ROOT / "torch_graph" / "model.py").read_text()
        assert (folder / "torch_graphs.py").read_text() == Path(tr.__file__).with_name("torch_graphs.py").read_text()
    assert {p.name for p in (repo / "sam3" / "1").iterdir()} == {*tr.SAM3_CODE, "tokenizer.json"}


def test_the_served_models_shared_modules_are_links_to_the_package() -> None:
    # One source: the sam3 model directory links to the modules the service imports, so the code
    # Triton runs cannot drift from the code the tests and the in-process backend run.
    package = Path(tr.__file__).resolve().parent
    for name in tr.SAM3_CODE:
        served = tr.SOURCE_ROOT / "sam3" / "1" / name
        if name == "model.py":
            assert not served.is_symlink()  # the Triton entry point itself lives only there
            continue
        assert served.is_symlink(), f"{served} is a copy, not a link to {package / name}"
        assert served.resolve() == package / name
