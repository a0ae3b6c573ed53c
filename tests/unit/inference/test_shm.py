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
    # The CPU flavour: the graphs run inside sam3, one instance.
    assert {m.model: m.instances for m in n.models} == {"sam3": 1}
    assert n.total_bytes == sum(m.instances * m.bytes_per_instance for m in n.models)
    gpu = shm.repository_need(model_configs("gpu", FULL_SIZE, REFERENCE), 1_000_000, POLICY)
    assert {m.model: m.instances for m in gpu.models} == {"sam3": 4}  # TensorRT graphs use no /dev/shm


def test_the_sam3_instance_holds_the_square_image_and_the_largest_answer() -> None:
    g = FULL_SIZE
    image = 3 * g.image_size**2
    answer = shm.ANSWER_PHRASES * REFERENCE.max_detections * (g.mask_size**2 + shm.DETECTION_EXTRA_BYTES)
    assert per_instance(need(g))["sam3"] == POLICY.region_bytes(image + answer)
    # Bigger geometry, bigger need: nothing is a fixed figure.
    assert per_instance(need(TINY))["sam3"] < per_instance(need(g))["sam3"]


def test_the_photo_size_does_not_matter_when_the_caller_resizes() -> None:
    small, large = per_instance(need(FULL_SIZE, 1_000_000)), per_instance(need(FULL_SIZE, 50_000_000))
    assert large == small


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
    assert "--shm-size=" in message and "sam3 1 x" in message
    shm.check(n, lambda: n.total_bytes)  # exactly enough passes


def test_available_bytes_reads_the_filesystem() -> None:
    assert shm.available_bytes(shm.SHM_DIR) > 0


def test_tensors_of_no_fixed_size_are_named_not_guessed() -> None:
    configs = model_configs("cpu", TINY, REFERENCE)
    # A python-backend graph model beside sam3 (a repository laid out another way) with one tensor of
    # no fixed size: it is named, not guessed.
    configs["sam3_text"] = (
        'name: "sam3_text" backend: "python" max_batch_size: 4 '
        'input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ 32 ] } ] '
        'output [ { name: "text_features" data_type: TYPE_FP32 dims: [ -1, 32 ] } ]'
    )
    n = shm.repository_need(configs, 1_000_000, POLICY)
    assert n.uncounted == ("sam3_text.text_features",)
    assert need(TINY).uncounted == ()
