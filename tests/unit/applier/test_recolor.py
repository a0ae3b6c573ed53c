from __future__ import annotations

import numpy as np
import pytest

from applier.apply import apply_rule
from applier.colors import hex_to_rgb, rgb_to_lab
from applier.ops.recolor import recolor
from scripts.image_quality import delta_e2000
from scripts.scenes import Scene, interior_scene

from .conftest import layers_of


@pytest.mark.parametrize("target", ["#5b7fa6", "#9caf88", "#c0664a", "#3b3f44", "#f2efe6"])
def test_region_takes_the_target_colour_and_keeps_its_lightness_detail(interior: Scene, target: str) -> None:
    wall = interior.masks["Wall"]
    out = recolor(interior.image, wall.astype(np.float32), value=target)
    before = rgb_to_lab(interior.image[wall])
    after = rgb_to_lab(out[wall])
    goal = rgb_to_lab(np.array(hex_to_rgb(target)))
    # The region's colour (its mean in Lab) is the target; the photo's shading stays around it.
    assert float(delta_e2000(after.mean(axis=0), goal)) <= 3.0
    assert np.corrcoef(before[:, 0], after[:, 0])[0, 1] >= 0.9
    # Every pixel carries the target's chroma: ΔE00 with lightness aligned is small everywhere.
    aligned = after.copy()
    aligned[:, 0] = goal[0]
    per_pixel = delta_e2000(aligned, np.broadcast_to(goal, aligned.shape))
    assert float(per_pixel.mean()) <= 3.0


def test_mean_per_pixel_delta_e_on_an_evenly_lit_textured_surface() -> None:
    rng = np.random.default_rng(7)
    # Plaster under even light: texture of about 1.5 L* units, no lighting gradient.
    base = np.array([205, 196, 180], np.float32)
    texture = rng.normal(0, 2.0, (200, 300, 1)).astype(np.float32)
    image = np.clip(base + texture, 0, 255).astype(np.uint8)
    alpha = np.ones((200, 300), np.float32)
    for target in ("#5b7fa6", "#9caf88", "#c0664a"):
        out = recolor(image, alpha, value=target)
        lab = rgb_to_lab(out.reshape(-1, 3))
        goal = rgb_to_lab(np.array(hex_to_rgb(target)))
        assert float(delta_e2000(lab, np.broadcast_to(goal, lab.shape)).mean()) <= 3.0
        before_l = rgb_to_lab(image.reshape(-1, 3))[:, 0]
        assert np.corrcoef(before_l, lab[:, 0])[0, 1] >= 0.9


def test_pixels_outside_the_mask_are_unchanged(interior: Scene) -> None:
    wall = interior.masks["Wall"]
    out = apply_rule(interior.image, layers_of(interior), {"Wall": {"action": "recolor", "value": "navy"}})
    assert np.array_equal(out.image[~wall], interior.image[~wall])
    assert not np.array_equal(out.image[wall], interior.image[wall])


def test_same_rule_gives_the_same_colour_on_every_photo_of_an_album() -> None:
    goal = rgb_to_lab(np.array(hex_to_rgb("#9caf88")))
    means = []
    for seed in range(4):
        scene = interior_scene(320, 240, seed=seed)
        wall = scene.masks["Wall"]
        out = recolor(scene.image, wall.astype(np.float32), value="#9caf88")
        means.append(rgb_to_lab(out[wall]).mean(axis=0))
    for mean in means:
        assert float(delta_e2000(mean, goal)) <= 2.0
    assert max(float(delta_e2000(a, b)) for a in means for b in means) <= 2.0


def test_strength_blends_towards_the_original(interior: Scene) -> None:
    wall = interior.masks["Wall"]
    alpha = wall.astype(np.float32)
    full = recolor(interior.image, alpha, value="#c0664a").astype(np.int32)
    half = recolor(interior.image, alpha, value="#c0664a", strength=0.5).astype(np.int32)
    original = interior.image.astype(np.int32)
    assert np.abs(half[wall] - (full[wall] + original[wall]) / 2).mean() < 1.0
