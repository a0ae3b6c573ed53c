"""Print what the protect proof measures on each kind of rendition, honest and with a broken enforce.

The figures of docs/applier.md "The protect proof". Run: ``python -m scripts.protect_proof_report``
(interior 960x720, seed 2, protect Text + Logo, wall recoloured sage; the broken case also recolours
the logo and text, which is what a missing ``enforce`` delivers).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import numpy.typing as npt
from PIL import Image

from applier import Template, apply_rule, build_protect, encode, render
from applier.proof import LOSSLESS_FORMATS, protected_region, prove_rendition, reference_rendition
from scripts.scenes import interior_scene

U8 = npt.NDArray[np.uint8]
TEMPLATES = [
    Template("fit_down_jpeg88", 600, 600, "fit", "jpeg", 88),
    Template("fill_crop_webp85", 400, 500, "fill", "webp", 85),
    Template("pad_png", 700, 700, "pad", "png"),
    Template("native_jpeg92", 960, 720, "fit", "jpeg", 92),
    Template("upscale_jpeg90", 1400, 1400, "fit", "jpeg", 90, upscale=True),
    Template("odd_png", 517, 333, "fit", "png"),
]


def _decode(data: bytes) -> U8:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGBA" if im.mode == "RGBA" else "RGB"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--cost", type=int, metavar="WIDTH", help="instead: time rendering vs proving the listing set at WIDTHx(3/4)"
    )
    args = parser.parse_args(argv)
    if args.cost:
        cost(args.cost, args.seed)
        return
    scene = interior_scene(960, 720, seed=args.seed)
    layers = {name: mask.astype(np.float32) for name, mask in scene.masks.items()}
    protect = build_protect(scene.image, ["Text", "Logo"], layers)
    sage = {"Wall": {"action": "recolor", "value": "sage"}}
    white = {"action": "recolor", "value": "white"}
    honest = apply_rule(scene.image, layers, sage, protect).image
    broken = apply_rule(scene.image, layers, {**sage, "Logo": white, "Text": white}, None).image
    print("| template | compared px | honest max diff | tolerance | honest within | broken max diff | broken within |")
    print("|---|---|---|---|---|---|---|")
    for t in TEMPLATES:
        reference = reference_rendition(scene.image, t, has_alpha=False)
        encoded = None if t.format in LOSSLESS_FORMATS else _decode(encode(reference, t))
        region = protected_region(protect.mask, t)
        row = []
        for output in (honest, broken):
            stored = _decode(encode(render(output, t), t))
            row.append(prove_rendition(reference, stored, region, t, encoded_reference=encoded))
        ok, bad = row
        print(
            f"| {t.id} | {ok.compared_pixels} | {ok.max_diff} | {ok.tolerance} | {ok.share_within_tolerance:.2%}"
            f" | {bad.max_diff} | {bad.share_within_tolerance:.2%} |"
        )


def cost(width: int, seed: int, repeat: int = 3) -> None:
    """Median seconds of rendering + encoding the interior listing set, and of proving it (reference
    renditions, encoded references, decoding what was stored, comparing)."""
    from server.presets import PRESETS
    from server.work import templates_of

    scene = interior_scene(width, width * 3 // 4, seed=seed)
    layers = {name: mask.astype(np.float32) for name, mask in scene.masks.items()}
    protect = build_protect(scene.image, ["Text", "Logo", "edges", "highlights"], layers)
    result = apply_rule(scene.image, layers, {"Wall": {"action": "recolor", "value": "sage"}}, protect).image
    templates = templates_of(PRESETS["interior"], "listing")
    render_s, prove_s = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        stored = [encode(render(result, t), t) for t in templates]
        render_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for t, data in zip(templates, stored, strict=True):
            reference = reference_rendition(scene.image, t, has_alpha=False)
            encoded = None if t.format in LOSSLESS_FORMATS else _decode(encode(reference, t))
            prove_rendition(reference, _decode(data), protected_region(protect.mask, t), t, encoded_reference=encoded)
        prove_s.append(time.perf_counter() - started)
    print(
        f"{width}x{width * 3 // 4} listing set ({len(templates)} renditions): render+encode "
        f"{statistics.median(render_s):.2f} s, proof {statistics.median(prove_s):.2f} s (median of {repeat})"
    )


if __name__ == "__main__":
    main()
