"""Every public function leaves its inputs untouched: they are passed read-only and compared after."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from applier import (
    Selection,
    Template,
    apply_rule,
    before_after,
    build_protect,
    concept_layer,
    refine_alpha,
    thumbnail,
)
from applier.ops.material import material
from applier.ops.recolor import recolor
from applier.ops.remove import inpaint, remove
from applier.ops.tone import adjust, blur, drop_shadow, lift_shadow
from applier.templates import render
from scripts.scenes import Scene, low_res_probability
from tests.support.output_set import SetItem, build_output_set

from .conftest import frozen, layers_of


def _ops(scene: Scene) -> list[Callable[[np.ndarray, np.ndarray], object]]:
    return [
        lambda img, a: recolor(img, a, value="#5b7fa6"),
        lambda img, a: material(img, a, texture="marble", rotation=30),
        lambda img, a: material(img, a, texture="upload", uploaded=frozen(scene.image[:40, :40])),
        lambda img, a: remove(img, a, mode="transparent"),
        lambda img, a: remove(img, a, mode="color"),
        lambda img, a: inpaint(img, a),
        lambda img, a: blur(img, a, radius=1.0),
        lambda img, a: adjust(img, a, brightness=0.2, contrast=0.2, saturation=-0.3, warmth=0.4),
        lambda img, a: lift_shadow(img, a),
        lambda img, a: drop_shadow(img, a),
    ]


@pytest.mark.parametrize("index", range(10))
def test_ops_do_not_mutate(seller: Scene, index: int) -> None:
    image = frozen(seller.image)
    alpha = frozen(seller.masks["Shadow" if index == 8 else "Product"].astype(np.float32))
    out = _ops(seller)[index](image, alpha)
    assert isinstance(out, np.ndarray) and out is not image
    assert np.array_equal(image, seller.image)
    rgba = remove(image, frozen(seller.masks["Background"].astype(np.float32)), mode="transparent")
    rgba_frozen = frozen(rgba)
    _ops(seller)[index](rgba_frozen, alpha)
    assert np.array_equal(rgba_frozen, rgba)


def test_pipeline_functions_do_not_mutate(seller: Scene) -> None:
    image = frozen(seller.image)
    layers = {k: frozen(v) for k, v in layers_of(seller).items()}
    prob = frozen(low_res_probability(seller.masks["Product"]))

    class Inst:
        number, score, box_xyxy, area = 1, 0.9, (0.0, 0.0, 10.0, 10.0), 100
        mask = prob

    alpha = refine_alpha(prob, image)
    layer = concept_layer("Product", [Inst()], image, Selection())
    protect = build_protect(image, ["Logo", "edges", "highlights"], layers, layer.locked)
    rule = {"Background": {"action": "remove", "mode": "transparent"}, "Product": {"action": "shadow", "mode": "add"}}
    result = apply_rule(image, {**layers, "Product": frozen(alpha)}, rule, protect)
    result_copy = result.image.copy()
    result.image.setflags(write=False)
    templates = [
        Template("square", 200, 200, "pad", "png", background="transparent"),
        Template("wide", 300, 100, "fill"),
    ]
    build_output_set([SetItem(0, result)], templates, rule, ["Logo"])
    render(result.image, templates[0])
    thumbnail(result.image)
    before_after(image, result.image)
    assert np.array_equal(image, seller.image)
    assert np.array_equal(result.image, result_copy)
    for name, value in layers_of(seller).items():
        assert np.array_equal(layers[name], value)
