from __future__ import annotations

import functools

import numpy as np
import pytest

from applier.errors import MaskError
from applier.masks import refine_alpha, upsample_probability
from scripts.image_quality import boundary_error
from scripts.scenes import Scene, interior_scene, low_res_probability, seller_scene


@functools.cache
def _scene(kind: str) -> Scene:
    return interior_scene(1152, 864, seed=1) if kind == "interior" else seller_scene(960, 960, seed=1)


@pytest.mark.parametrize(
    ("kind", "concept"),
    [
        ("interior", "Wall"),
        ("interior", "Window"),
        ("interior", "Sign"),
        ("interior", "Text"),
        ("seller", "Product"),
        ("seller", "Logo"),
    ],
)
def test_refined_edges_beat_bilinear_upsampling(kind: str, concept: str) -> None:
    scene = _scene(kind)
    truth = scene.masks[concept]
    prob = low_res_probability(truth)  # 288x288, aspect not kept, like SAM3
    bilinear = upsample_probability(prob, *truth.shape)
    refined = refine_alpha(prob, scene.image)
    assert refined.dtype == np.float32 and refined.shape == truth.shape
    assert float(refined.min()) >= 0.0 and float(refined.max()) <= 1.0
    assert boundary_error(refined, truth) < 0.5 * boundary_error(bilinear, truth)


def test_alpha_is_exactly_zero_or_one_away_from_the_edge() -> None:
    scene = interior_scene(800, 600, seed=2)
    truth = scene.masks["Window"]
    refined = refine_alpha(low_res_probability(truth), scene.image)
    import cv2

    near = cv2.dilate(truth.astype(np.uint8), np.ones((25, 25), np.uint8)) != cv2.erode(
        truth.astype(np.uint8), np.ones((25, 25), np.uint8)
    )
    far = refined[~near]
    assert set(np.unique(far).tolist()) <= {0.0, 1.0}
    assert np.array_equal(far > 0.5, truth[~near])


def test_rejects_masks_that_are_not_uint8_probabilities() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(MaskError):
        refine_alpha(np.zeros((8, 8), np.float32), image)
    with pytest.raises(MaskError):
        refine_alpha(np.zeros((8, 8), np.uint8), np.zeros((20, 30), np.uint8))


def test_empty_and_full_masks() -> None:
    image = interior_scene(200, 150, seed=0).image
    assert not refine_alpha(np.zeros((288, 288), np.uint8), image).any()
    assert refine_alpha(np.full((288, 288), 255, np.uint8), image).all()
