from __future__ import annotations

import cv2
import numpy as np
import pytest

from applier.apply import apply_rule
from applier.protect import build_protect, edges_layer, highlights_layer
from scripts.scenes import Scene

from .conftest import layers_of

INTERIOR_RULES = [
    {"Wall": {"action": "recolor", "value": "sage"}},
    {"Floor": {"action": "material", "texture": "wood"}},
    {"Wall": {"action": "adjust", "brightness": 0.3, "warmth": 0.5}},
    {"Wall": {"action": "blur", "radius": 2}},
    {"Sign": {"action": "remove", "mode": "inpaint"}},
    {"Wall": {"action": "remove", "mode": "transparent"}},
]
SELLER_RULES = [
    {"Background": {"action": "remove", "mode": "transparent"}, "Product": {"action": "shadow", "mode": "add"}},
    {"Background": {"action": "remove", "mode": "color", "color": "#dde6ee"}},
    {"Shadow": {"action": "shadow", "mode": "remove"}},
    {"Product": {"action": "recolor", "value": "teal"}},
]


@pytest.mark.parametrize("rule", INTERIOR_RULES)
def test_protected_pixels_are_bit_exact_interior(interior: Scene, rule: dict[str, dict[str, object]]) -> None:
    layers = layers_of(interior)
    mask = build_protect(interior.image, ["Text", "Logo", "edges", "highlights"], layers)
    result = apply_rule(interior.image, layers, rule, mask)
    assert result.protect.protected_pixels == int(mask.mask.sum()) > 0
    assert result.protect.changed_pixels == 0 and result.protect.passed
    assert np.array_equal(result.image[mask.mask, :3], interior.image[mask.mask])
    if result.image.shape[2] == 4:
        assert (result.image[mask.mask, 3] == 255).all()
    assert not np.array_equal(result.image[..., :3], interior.image)


@pytest.mark.parametrize("rule", SELLER_RULES)
def test_protected_pixels_are_bit_exact_seller(seller: Scene, rule: dict[str, dict[str, object]]) -> None:
    layers = layers_of(seller)
    mask = build_protect(seller.image, ["Logo", "Text"], layers)
    result = apply_rule(seller.image, layers, rule, mask)
    assert result.protect.changed_pixels == 0
    assert np.array_equal(result.image[mask.mask, :3], seller.image[mask.mask])


def test_locked_instances_and_missing_layers_are_recorded(interior: Scene) -> None:
    layers = layers_of(interior)
    locked = {"Wall#1": layers["Wall"] * (np.arange(640)[None, :] < 200)}
    mask = build_protect(interior.image, ["text", "Door"], layers, locked)
    assert mask.layers == ("text", "Wall#1") and mask.missing == ("Door",)
    result = apply_rule(interior.image, layers, {"Wall": {"action": "recolor", "value": "navy"}}, mask)
    assert result.protect.to_dict()["changed_pixels"] == 0
    kept = locked["Wall#1"] >= 0.5
    assert np.array_equal(result.image[kept], interior.image[kept])


def test_edges_are_a_thin_band_on_region_boundaries(interior: Scene) -> None:
    layers = layers_of(interior)
    band = edges_layer({"Wall": layers["Wall"]}, (480, 640), width_px=2)
    wall = interior.masks["Wall"]
    # The band straddles the boundary: some of it inside the wall, some outside, and it is thin.
    assert (band & wall).any() and (band & ~wall).any()
    w8 = wall.astype(np.uint8)
    boundary = cv2.dilate(w8, np.ones((3, 3), np.uint8)) != cv2.erode(w8, np.ones((3, 3), np.uint8))
    near = cv2.dilate(boundary.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not (band & ~near).any()
    assert (boundary & ~band).sum() == 0


def test_highlights_find_the_specular_spots_not_the_flat_wall(interior: Scene) -> None:
    spots = highlights_layer(interior.image)
    truth = interior.masks["Highlight"]
    assert (spots & truth).sum() >= 0.8 * truth.sum()
    assert (spots & interior.masks["Wall"]).sum() < 0.01 * interior.masks["Wall"].sum()
