"""applier.proof on encoded-then-decoded renditions: honest outputs pass (lossless exactly, lossy
within the measured encoder tolerance); an output whose protected pixels were edited fails."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from applier import Template, apply_rule, build_protect, encode, render
from applier.proof import (
    LOSSLESS_FORMATS,
    METHOD_LOSSLESS,
    METHOD_LOSSY,
    protected_region,
    prove_master,
    prove_rendition,
    reference_rendition,
)
from applier.protect import ProtectMask
from scripts.scenes import Scene, interior_scene

from .conftest import frozen, layers_of

U8 = npt.NDArray[np.uint8]
SAGE = {"Wall": {"action": "recolor", "value": "sage"}}
TRANSPARENT = {"Wall": {"action": "remove", "mode": "transparent"}}
TEMPLATES = [
    Template("fit_down_jpeg", 600, 600, "fit", "jpeg", 88),
    Template("fill_crop_webp", 800, 900, "fill", "webp", 85),
    Template("pad_png", 700, 700, "pad", "png"),
    Template("native_jpeg", 960, 720, "fit", "jpeg", 92),
    Template("upscale_jpeg", 1400, 1400, "fit", "jpeg", 90, upscale=True),
    Template("odd_png", 517, 333, "fit", "png"),
]


@pytest.fixture(scope="module")
def scene() -> Scene:
    return interior_scene(960, 720, seed=2)


def _decode(data: bytes) -> U8:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGBA" if im.mode == "RGBA" else "RGB"))


def _protect(scene: Scene) -> ProtectMask:
    return build_protect(scene.image, ["Text", "Logo"], layers_of(scene))


def _prove(source: U8, output: U8, protect: ProtectMask, template: Template, *, has_alpha: bool) -> dict[str, object]:
    stored = _decode(encode(render(output, template), template))
    reference = reference_rendition(source, template, has_alpha=has_alpha)
    encoded = None if template.format in LOSSLESS_FORMATS else _decode(encode(reference, template))
    region = protected_region(protect.mask, template)
    return prove_rendition(reference, stored, region, template, encoded_reference=encoded).to_dict()


@pytest.mark.parametrize("rule", [SAGE, TRANSPARENT], ids=["recolor", "transparent"])
@pytest.mark.parametrize("template", TEMPLATES, ids=[t.id for t in TEMPLATES])
def test_honest_renditions_pass(scene: Scene, rule: dict[str, dict[str, object]], template: Template) -> None:
    protect = _protect(scene)
    result = apply_rule(scene.image, layers_of(scene), rule, protect)
    if result.has_alpha and template.format != "jpeg":
        template = Template(template.id, template.width, template.height, template.fit, template.format,
                            template.quality, "transparent", template.upscale)  # fmt: skip
    proof = _prove(scene.image, result.image, protect, template, has_alpha=result.has_alpha)
    assert proof["passed"] is True, proof
    assert isinstance(proof["compared_pixels"], int) and proof["compared_pixels"] > 100
    if template.format == "png":
        assert proof["method"] == METHOD_LOSSLESS and proof["max_diff"] == 0
    else:
        # A lossy rendition of the protected logo and text reports the encoder's measured error.
        assert proof["method"] == METHOD_LOSSY
        assert isinstance(proof["tolerance"], int) and 0 < proof["tolerance"] < 80


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.id for t in TEMPLATES])
def test_a_rendition_whose_protected_pixels_were_edited_fails(scene: Scene, template: Template) -> None:
    protect = _protect(scene)
    # What a broken enforce delivers: the logo and text recoloured along with the wall.
    edited = {**SAGE, "Logo": {"action": "recolor", "value": "white"}, "Text": {"action": "recolor", "value": "white"}}
    broken = apply_rule(scene.image, layers_of(scene), edited, None)
    proof = _prove(scene.image, broken.image, protect, template, has_alpha=False)
    assert proof["passed"] is False, proof
    assert isinstance(proof["max_diff"], int) and proof["max_diff"] > 100


def test_the_region_holds_only_pixels_computed_from_protected_ones(scene: Scene) -> None:
    protect = _protect(scene)
    for template in TEMPLATES:
        region = protected_region(protect.mask, template)
        black = dataclasses.replace(template, background="#000000")  # padding reads as unprotected
        coverage = render(np.dstack([protect.mask.astype(np.uint8) * 255] * 3), black)[..., 0]
        assert region.shape == coverage.shape
        # Every compared pixel is fully protected once resampled; padding never counts.
        assert (coverage[region] == 255).all(), template.id
        assert region.sum() > 0.3 * (coverage == 255).sum(), template.id


def test_the_master_must_be_bit_exact_and_opaque(scene: Scene) -> None:
    protect = _protect(scene)
    result = apply_rule(frozen(scene.image), layers_of(scene), TRANSPARENT, protect)
    ok = prove_master(frozen(scene.image), frozen(result.image), protect)
    assert ok.passed and ok.changed_pixels == 0 and ok.protected_pixels == int(protect.mask.sum())
    ys, xs = np.nonzero(protect.mask)
    one_off = result.image.copy()
    one_off[ys[0], xs[0], 1] ^= 1
    bad = prove_master(scene.image, one_off, protect)
    assert not bad.passed and bad.changed_pixels == 1 and bad.max_diff == 1
    see_through = result.image.copy()
    see_through[ys[-1], xs[-1], 3] = 254
    assert not prove_master(scene.image, see_through, protect).passed
    assert prove_master(scene.image, result.image[:-1], protect).problem is not None


def test_a_rendition_of_the_wrong_size_fails(scene: Scene) -> None:
    protect = _protect(scene)
    template = TEMPLATES[0]
    reference = reference_rendition(scene.image, template, has_alpha=False)
    region = protected_region(protect.mask, template)
    proof = prove_rendition(reference, reference[:-2], region, template, encoded_reference=reference)
    assert not proof.passed and proof.problem
