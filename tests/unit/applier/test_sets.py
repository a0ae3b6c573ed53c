from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from applier.apply import apply_rule
from applier.errors import ParamError
from applier.protect import build_protect
from applier.sets import before_after, thumbnail
from applier.templates import Template, geometry, render
from scripts.scenes import Scene, seller_scene
from tests.support.output_set import SetItem, build_output_set

from .conftest import layers_of


@pytest.mark.parametrize(
    ("fit", "size", "expected_scaled", "expected_crop", "expected_canvas"),
    [
        ("fit", (400, 400), (400, 300), (0, 0, 400, 300), (400, 300)),
        ("pad", (400, 400), (400, 300), (0, 0, 400, 300), (400, 400)),
        ("fill", (400, 400), (533, 400), (66, 0, 400, 400), (400, 400)),
        ("fill", (800, 200), (800, 600), (0, 200, 800, 200), (800, 200)),
        ("fit", (2000, 2000), (800, 600), (0, 0, 800, 600), (800, 600)),  # no upscaling
    ],
)
def test_template_geometry(
    fit: str,
    size: tuple[int, int],
    expected_scaled: tuple[int, int],
    expected_crop: tuple[int, int, int, int],
    expected_canvas: tuple[int, int],
) -> None:
    t = Template("t", size[0], size[1], fit)  # type: ignore[arg-type]
    assert geometry(800, 600, t) == (expected_scaled, expected_crop, expected_canvas)
    image = np.zeros((600, 800, 3), np.uint8)
    assert render(image, t).shape == (expected_canvas[1], expected_canvas[0], 3)


def test_pad_fills_with_the_background_and_keeps_transparency_when_asked() -> None:
    image = np.full((100, 200, 4), 255, np.uint8)
    image[..., 3] = 0
    image[40:60, 90:110, 3] = 255
    padded = render(image, Template("p", 200, 200, "pad", "png", background="#102030"))
    assert padded.shape == (200, 200, 3)
    assert tuple(padded[0, 0]) == (16, 32, 48) and tuple(padded[100, 100]) == (255, 255, 255)
    clear = render(image, Template("c", 200, 200, "pad", "png", background="transparent"))
    assert clear.shape == (200, 200, 4) and clear[0, 0, 3] == 0 and clear[100, 100, 3] == 255


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0}, "width"),
        ({"fit": "stretch"}, "fit"),
        ({"format": "gif"}, "format"),
        ({"quality": 0}, "quality"),
        ({"background": "plaid"}, "background"),
        ({"background": "transparent", "format": "jpeg"}, "background"),
    ],
)
def test_template_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"id": "x", "width": 10, "height": 10}
    with pytest.raises(ParamError) as info:
        Template.from_dict({**base, **kwargs})
    assert info.value.field == field


def test_output_set_zip_holds_every_rendition_and_a_manifest_with_hashes() -> None:
    scenes: list[Scene] = [seller_scene(400, 300, seed=s) for s in range(2)]
    rule = {"Background": {"action": "remove", "mode": "transparent"}, "Product": {"action": "shadow", "mode": "add"}}
    items = []
    for idx, scene in enumerate(scenes):
        layers = layers_of(scene)
        protect = build_protect(scene.image, ["Logo"], layers)
        items.append(SetItem(idx, apply_rule(scene.image, layers, rule, protect), source_sha256="ab" * 32))
    templates = [
        Template("square_png", 256, 256, "pad", "png", background="transparent"),
        Template("wide_jpg", 320, 120, "fill", "jpeg", 85, "#ffffff"),
        Template("web", 200, 200, "fit", "webp", 80, "#f0f0f0"),
    ]
    data, doc = build_output_set(items, templates, rule, ["Logo"], extra={"job_id": "j1"})
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(zf.namelist())
    assert names == sorted(["manifest.json"] + [f"{i}/{t.id}.{t.extension}" for i in range(2) for t in templates])
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest == json.loads(json.dumps(doc))
    assert manifest["job_id"] == "j1" and manifest["rule"] == rule and manifest["protect"] == ["Logo"]
    assert [t["id"] for t in manifest["templates"]] == [t.id for t in templates]
    for item in manifest["items"]:
        assert item["protect_check"]["changed_pixels"] == 0 and item["protect_check"]["protected_pixels"] > 0
        assert item["alpha"] is True
        for rendition in item["renditions"]:
            blob = zf.read(rendition["path"])
            assert hashlib.sha256(blob).hexdigest() == rendition["sha256"]
            assert rendition["bytes"] == len(blob)
            decoded = Image.open(io.BytesIO(blob))
            assert decoded.size == (rendition["width"], rendition["height"])
            assert (
                decoded.format
                == {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}[rendition["media_type"]]
            )
    square = Image.open(io.BytesIO(zf.read("0/square_png.png")))
    assert square.mode == "RGBA" and square.size == (256, 256)
    # Deterministic: the same inputs give the same bytes.
    again, _ = build_output_set(items, templates, rule, ["Logo"], extra={"job_id": "j1"})
    assert again == data


def test_duplicate_template_ids_are_refused() -> None:
    scene = seller_scene(100, 100, seed=0)
    item = SetItem(0, apply_rule(scene.image, {}, {}))
    with pytest.raises(ValueError, match="unique"):
        build_output_set([item], [Template("a", 10, 10), Template("a", 20, 20)], {})


def test_previews_are_small_jpegs() -> None:
    scene = seller_scene(640, 480, seed=0)
    rgba = np.dstack([scene.image, np.full((480, 640), 128, np.uint8)])
    thumb = Image.open(io.BytesIO(thumbnail(rgba, 160)))
    assert thumb.format == "JPEG" and max(thumb.size) == 160
    pair = Image.open(io.BytesIO(before_after(scene.image, rgba, 800)))
    assert pair.format == "JPEG" and pair.size[0] > pair.size[1] and pair.size[0] <= 800 + 10
