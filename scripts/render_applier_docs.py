"""Render the before/after images of docs/applier.md from the synthetic scenes.

Masks go through the same path as production: each ground-truth mask is reduced to a 288x288
probability map (what SAM3 returns) and refined back to the photo with ``refine_alpha``.
Run: ``python -m scripts.render_applier_docs [--out docs/img/applier]``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from applier import Template, apply_rule, before_after, build_protect, refine_alpha, render
from applier.colors import hex_to_rgb, rgb_to_lab
from applier.masks import upsample_probability
from scripts.image_quality import boundary_error, delta_e2000
from scripts.scenes import Scene, interior_scene, low_res_probability, seller_scene

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Rule = dict[str, dict[str, object]]

INTERIOR: list[tuple[str, Rule, list[str]]] = [
    ("recolor_wall_sage", {"Wall": {"action": "recolor", "value": "sage"}}, ["Text", "Logo"]),
    ("recolor_wall_white", {"Wall": {"action": "recolor", "value": "white"}}, ["Text", "Logo"]),
    (
        "recolor_wall_navy_floor_wood",
        {
            "Wall": {"action": "recolor", "value": "navy"},
            "Floor": {"action": "material", "texture": "wood", "perspective": 0.8},
        },
        [],
    ),
    (
        "material_floor_marble",
        {"Floor": {"action": "material", "texture": "marble", "scale": 1.5, "perspective": 0.8}},
        [],
    ),
    ("material_floor_concrete", {"Floor": {"action": "material", "texture": "concrete", "perspective": 0.6}}, []),
    (
        "material_floor_tiles",
        {"Floor": {"action": "material", "texture": "tiles", "color": "#c8b8a0", "perspective": 0.8}},
        [],
    ),
    ("remove_logo_inpaint", {"Logo": {"action": "remove", "mode": "inpaint"}}, []),
    ("blur_window", {"Window": {"action": "blur", "radius": 1.5}}, []),
    ("adjust_wall_warm_bright", {"Wall": {"action": "adjust", "brightness": 0.15, "warmth": 0.6}}, []),
]
SELLER: list[tuple[str, Rule, list[str]]] = [
    (
        "remove_background_transparent_add_shadow",
        {"Background": {"action": "remove", "mode": "transparent"}, "Product": {"action": "shadow", "mode": "add"}},
        ["Logo", "Text"],
    ),
    (
        "remove_background_color",
        {"Background": {"action": "remove", "mode": "color", "color": "#dfe8f0"}},
        ["Logo", "Text"],
    ),
    ("shadow_remove", {"Shadow": {"action": "shadow", "mode": "remove"}}, []),
    ("shadow_soften", {"Shadow": {"action": "shadow", "mode": "soften", "strength": 0.6}}, []),
    (
        "recolor_product_teal",
        {"Product": {"action": "recolor", "value": "teal"}},
        ["Label", "Logo", "Text", "highlights"],
    ),
    ("blur_background", {"Background": {"action": "blur", "radius": 1.2}}, []),
    ("adjust_product_saturation", {"Product": {"action": "adjust", "saturation": 0.5, "contrast": 0.2}}, []),
]


def segmented_layers(scene: Scene) -> dict[str, F32]:
    """What the pipeline would have: every concept through a 288x288 probability map and refinement."""
    return {name: refine_alpha(low_res_probability(mask), scene.image) for name, mask in scene.masks.items()}


def _save_jpeg(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _rule_pairs(scene: Scene, rules: list[tuple[str, Rule, list[str]]], out: Path) -> list[str]:
    layers = segmented_layers(scene)
    lines = []
    for name, rule, protect in rules:
        mask = build_protect(scene.image, protect, layers)
        result = apply_rule(scene.image, layers, rule, mask)
        _save_jpeg(out / f"{name}.jpg", before_after(scene.image, result.image, max_side=1000, quality=80))
        check = result.protect
        lines.append(f"{name}: protected {check.protected_pixels} px, changed {check.changed_pixels}")
    return lines


def _mask_comparison(out: Path) -> str:
    """Crops of one edge at 12x upsampling: coarse bilinear alpha vs refined alpha, and the error."""
    scene = interior_scene(3456, 2592, seed=1)
    truth = scene.masks["Sign"]
    prob = low_res_probability(truth)
    bilinear = upsample_probability(prob, *truth.shape)
    refined = refine_alpha(prob, scene.image)
    ys, xs = np.nonzero(truth)
    y0, x0 = int(ys.min()) - 40, int(xs.min()) - 40
    crop = (slice(y0, y0 + 240), slice(x0, x0 + 320))

    def show(alpha: F32) -> U8:
        colour = np.array([220, 60, 60], np.float32)
        img = scene.image[crop].astype(np.float32)
        a = alpha[crop][..., None] * 0.6
        shown: U8 = np.clip(img * (1 - a) + colour * a, 0, 255).astype(np.uint8)
        return shown

    panel = np.concatenate([scene.image[crop], show(bilinear), show(refined)], axis=1)
    panel = cv2.resize(panel, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_NEAREST)
    buf = io.BytesIO()
    Image.fromarray(panel).save(buf, "PNG", optimize=True)
    (out / "mask_refinement.png").write_bytes(buf.getvalue())
    return (
        f"mask_refinement: boundary error bilinear {boundary_error(bilinear, truth):.3f}, "
        f"refined {boundary_error(refined, truth):.3f}"
    )


def _recolor_figures() -> list[str]:
    """Colour accuracy of recolour on the docs scene, with masks through the 288x288 path."""
    scene = interior_scene(1200, 900, seed=2)
    alpha = refine_alpha(low_res_probability(scene.masks["Wall"]), scene.image)
    core = scene.masks["Wall"] & (alpha >= 0.999)
    before = rgb_to_lab(scene.image[core])
    lines = []
    for color in ("#9caf88", "#1f2a44", "#c0664a", "#f2efe6", "#ffffff"):
        result = apply_rule(scene.image, {"Wall": alpha}, {"Wall": {"action": "recolor", "value": color}})
        after = rgb_to_lab(result.image[core])
        goal = rgb_to_lab(np.array(hex_to_rgb(color)))
        mean_de = float(delta_e2000(after.mean(axis=0), goal))
        pixel_de = float(delta_e2000(after, np.broadcast_to(goal, after.shape)).mean())
        corr = float(np.corrcoef(before[:, 0], after[:, 0])[0, 1])
        lines.append(
            f"recolor {color}: dE00(region mean, target) {mean_de:.2f}, mean per-pixel dE00 {pixel_de:.2f}, "
            f"L* correlation {corr:.3f}, wall L* std before {before[:, 0].std():.1f}"
        )
    return lines


def _protect_overlay(out: Path) -> str:
    scene = interior_scene(1200, 900, seed=2)
    layers = segmented_layers(scene)
    mask = build_protect(scene.image, ["Text", "Logo", "edges", "highlights"], layers)
    tint = scene.image.astype(np.float32)
    tint[mask.mask] = tint[mask.mask] * 0.3 + np.array([255, 0, 200], np.float32) * 0.7
    pair = before_after(scene.image, tint.astype(np.uint8), max_side=1000, quality=80)
    _save_jpeg(out / "protect_layers.jpg", pair)
    return f"protect_layers: {int(mask.mask.sum())} px in {mask.layers}"


def _templates_sheet(out: Path) -> str:
    scene = seller_scene(1200, 900, seed=3)
    layers = segmented_layers(scene)
    result = apply_rule(
        scene.image,
        layers,
        {"Background": {"action": "remove", "mode": "transparent"}, "Product": {"action": "shadow", "mode": "add"}},
    )
    templates = [
        Template("square_pad", 300, 300, "pad", "png", background="#eef2f5"),
        Template("story_fill", 180, 300, "fill", "jpeg", 85, "#ffffff"),
        Template("banner_fill", 480, 160, "fill", "webp", 85, "#f6efe6"),
        Template("fit", 300, 300, "fit", "jpeg", 85, "#ffffff"),
    ]
    panels = [render(result.image, t) for t in templates]
    h = max(p.shape[0] for p in panels)
    gap = 12
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    sheet = np.full((h, width, 3), 255, np.uint8)
    x = 0
    for p in panels:
        sheet[: p.shape[0], x : x + p.shape[1]] = p[..., :3]
        x += p.shape[1] + gap
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, "JPEG", quality=82)
    (out / "templates.jpg").write_bytes(buf.getvalue())
    return "templates: " + ", ".join(
        f"{t.id} {p.shape[1]}x{p.shape[0]}" for t, p in zip(templates, panels, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/img/applier")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = _rule_pairs(interior_scene(1200, 900, seed=2), INTERIOR, out)
    lines += _rule_pairs(seller_scene(1000, 1000, seed=4), SELLER, out)
    lines += _recolor_figures()
    lines.append(_mask_comparison(out))
    lines.append(_protect_overlay(out))
    lines.append(_templates_sheet(out))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
