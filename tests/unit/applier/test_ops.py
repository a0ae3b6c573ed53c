from __future__ import annotations

import numpy as np

from applier.apply import apply_rule
from applier.colors import rgb_to_lab
from applier.ops.remove import remove
from scripts.scenes import Scene

from .conftest import layers_of


def test_transparent_background_has_a_clean_matte(seller: Scene) -> None:
    bg = seller.masks["Background"]
    out = remove(seller.image, bg.astype(np.float32), mode="transparent", feather=1.0)
    assert out.shape[2] == 4
    assert (out[bg & ~_near(bg), 3] == 0).all() and (out[~bg & ~_near(bg), 3] == 255).all()
    assert np.array_equal(out[~bg & ~_near(bg), :3], seller.image[~bg & ~_near(bg)])
    # Edge pixels carry foreground colour, not the grey of the old studio backdrop: composited on
    # black, the product's rim is no lighter than the product itself.
    edge = (out[..., 3] > 0) & (out[..., 3] < 255)
    assert edge.any()
    product_l = rgb_to_lab(seller.image[seller.masks["Product"] & ~_near(bg)])[:, 0].mean()
    rim_l = rgb_to_lab(out[edge, :3])[:, 0].mean()
    assert rim_l <= product_l + 25


def _near(mask: np.ndarray) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    k = np.ones((7, 7), np.uint8)
    return np.asarray(cv2.dilate(m, k) != cv2.erode(m, k))


def test_inpaint_erases_a_small_logo(interior: Scene) -> None:
    layers = layers_of(interior)
    out = apply_rule(interior.image, layers, {"Logo": {"action": "remove"}}).image
    logo = interior.masks["Logo"]
    sign_only = interior.masks["Sign"] & ~logo & ~interior.masks["Text"]
    sign_colour = interior.image[sign_only].astype(np.float32).mean(axis=0)
    before = np.abs(interior.image[logo].astype(np.float32) - sign_colour).mean()
    after = np.abs(out[logo].astype(np.float32) - sign_colour).mean()
    assert after < 0.35 * before


def test_drop_shadow_darkens_under_the_product_only(seller: Scene) -> None:
    layers = layers_of(seller)
    out = apply_rule(seller.image, layers, {"Product": {"action": "shadow", "mode": "add", "strength": 0.8}})
    product = seller.masks["Product"]
    ys, xs = np.nonzero(product)
    below = (slice(ys.max() + 2, ys.max() + 8), slice(int(xs.mean()) - 5, int(xs.mean()) + 5))
    assert out.image[below].mean() < seller.image[below].mean() - 10
    assert np.array_equal(out.image[product], seller.image[product])
    assert out.image[:10, :10].mean() == seller.image[:10, :10].mean()


def test_shadow_removal_lifts_the_shadow_towards_the_backdrop(seller: Scene) -> None:
    layers = layers_of(seller)
    shadow = seller.masks["Shadow"]
    out = apply_rule(seller.image, layers, {"Shadow": {"action": "shadow", "mode": "remove"}}).image
    backdrop = seller.image[~shadow & seller.masks["Background"]].astype(np.float32).mean()
    assert abs(out[shadow].mean() - backdrop) < 0.5 * abs(seller.image[shadow].mean() - backdrop)


def test_blur_adjust_and_material_change_only_their_region(interior: Scene) -> None:
    layers = layers_of(interior)
    for rule in (
        {"Wall": {"action": "adjust", "brightness": -0.3, "saturation": 0.5}},
        {"Floor": {"action": "material", "texture": "tiles", "color": "#c8b8a0"}},
        {"Window": {"action": "blur", "radius": 3}},
    ):
        concept = next(iter(rule))
        out = apply_rule(interior.image, layers, rule).image
        region = interior.masks[concept]
        assert np.array_equal(out[~region], interior.image[~region]), rule
        assert np.abs(out[region].astype(int) - interior.image[region]).mean() > 2, rule


def test_keep_and_unknown_concepts_leave_the_photo_alone(interior: Scene) -> None:
    result = apply_rule(interior.image, layers_of(interior), {"Wall": {"action": "keep"}, "Door": {"action": "blur"}})
    assert np.array_equal(result.image, interior.image) and result.image is not interior.image
    assert [(s.concept, s.action, s.pixels > 0) for s in result.steps] == [
        ("Door", "blur", False),
        ("Wall", "keep", True),
    ]


def test_material_perspective_shrinks_the_pattern_towards_the_top() -> None:
    from applier.ops.material import material

    image = np.full((300, 400, 3), 128, np.uint8)
    alpha = np.ones((300, 400), np.float32)
    flat = material(image, alpha, texture="tiles", shading=0.0)
    deep = material(image, alpha, texture="tiles", shading=0.0, perspective=0.9)

    def grout_columns(row: np.ndarray) -> int:
        dark = row.mean(axis=-1) < row.mean() - 8
        return int(np.count_nonzero(dark[1:] & ~dark[:-1]))

    assert grout_columns(flat[20]) == grout_columns(flat[280])
    assert grout_columns(deep[20]) > 1.5 * grout_columns(deep[280])


def test_transparent_matte_with_a_very_long_soft_edge() -> None:
    # More partially transparent pixels than OpenCV's remap accepts along one side (32767).
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (220, 220, 3), dtype=np.uint8)
    alpha = np.full((220, 220), 0.5, np.float32)
    out = remove(image, alpha, mode="transparent", feather=0.0)
    assert out.shape == (220, 220, 4) and set(np.unique(out[..., 3]).tolist()) == {128}
