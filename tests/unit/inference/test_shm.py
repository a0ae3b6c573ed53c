"""The /dev/shm a repository needs comes from its configs, and a start is refused when it is not there."""

from __future__ import annotations

import pytest

from server.errors import InferenceUnavailable
from server.inference import shm
from server.inference.triton_repository import FULL_SIZE, REFERENCE, Geometry, model_configs

TINY = Geometry(image_size=112, fpn_channels=32, fpn_sizes=(32, 16, 8), text_length=32, text_dim=32, num_queries=8)
POLICY = shm.ShmPolicy(default_byte_size=1 * shm.MIB, growth_byte_size=1 * shm.MIB)


def need(geometry: Geometry, pixels: int = 1_000_000, policy: shm.ShmPolicy = POLICY) -> shm.ShmNeed:
    return shm.repository_need(model_configs("cpu", geometry, REFERENCE), pixels, policy)


def per_instance(n: shm.ShmNeed) -> dict[str, int]:
    return {m.model: m.bytes_per_instance for m in n.models}


def test_every_python_instance_is_counted() -> None:
    n = need(FULL_SIZE)
    assert {m.model: m.instances for m in n.models} == {
        "sam3": 4,
        "sam3_vision": 1,
        "sam3_text": 1,
        "sam3_decoder": 1,
    }
    assert n.total_bytes == sum(m.instances * m.bytes_per_instance for m in n.models)


def test_a_graph_instance_holds_a_full_batch_of_its_tensors() -> None:
    g = FULL_SIZE
    fpn = 4 * g.fpn_channels * sum(s * s for s in g.fpn_sizes)
    vision_row = 4 * 3 * g.image_size**2 + fpn
    assert per_instance(need(g))["sam3_vision"] == POLICY.region_bytes(8 * vision_row)  # max batch 8
    # Bigger geometry, bigger need: nothing is a fixed figure.
    assert per_instance(need(TINY))["sam3_vision"] < per_instance(need(g))["sam3_vision"]


def test_the_sam3_instance_grows_with_the_largest_photo() -> None:
    small, large = per_instance(need(FULL_SIZE, 1_000_000)), per_instance(need(FULL_SIZE, 50_000_000))
    assert large["sam3"] - small["sam3"] == pytest.approx(49_000_000 * 3, abs=POLICY.growth_byte_size)
    assert large["sam3_decoder"] == small["sam3_decoder"]


def test_regions_are_the_default_size_grown_in_whole_steps() -> None:
    policy = shm.ShmPolicy(default_byte_size=16 * shm.MIB, growth_byte_size=64 * shm.MIB)
    assert policy.region_bytes(1) == 16 * shm.MIB
    assert policy.region_bytes(16 * shm.MIB + 1) == 80 * shm.MIB
    assert "--backend-config=python,shm-growth-byte-size=67108864" in policy.backend_config()


def test_too_little_shm_is_one_clear_error() -> None:
    n = need(FULL_SIZE)
    with pytest.raises(InferenceUnavailable) as caught:
        shm.check(n, lambda: 64 * shm.MIB)  # Docker's default --shm-size
    message = caught.value.message
    assert "/dev/shm has 64 MiB free" in message and f"{n.total_bytes // shm.MIB} MiB" in message
    assert "--shm-size=" in message and "sam3 4 x" in message
    shm.check(n, lambda: n.total_bytes)  # exactly enough passes


def test_available_bytes_reads_the_filesystem() -> None:
    assert shm.available_bytes(shm.SHM_DIR) > 0


def test_tensors_of_no_fixed_size_are_named_not_guessed() -> None:
    configs = model_configs("cpu", TINY, REFERENCE)
    decoder = configs["sam3_decoder"]
    configs["sam3_decoder"] = decoder.replace(
        'name: "pred_boxes" data_type: TYPE_FP32 dims: [ 8, 4 ]',
        'name: "pred_boxes" data_type: TYPE_FP32 dims: [ -1, 4 ]',
    )
    assert configs["sam3_decoder"] != decoder
    n = shm.repository_need(configs, 1_000_000, POLICY)
    assert n.uncounted == ("sam3_decoder.pred_boxes",)
    assert need(TINY).uncounted == ()
