"""Applier speed: ms per megapixel for each action at 1, 4 and 12 MP, on one core.

Each figure is the median of several runs of the action on a synthetic interior (the region is the
wall, about 40% of the frame, or the floor for material), next to the cost of one full-frame memory
pass (``np.copyto`` of the same RGB image, read + write) measured in the same run, so results are
comparable across machines. Run: ``python -m bench.applier_bench [--json PATH] [--sizes 1,4,12]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from applier.masks import refine_alpha
from applier.ops.material import material
from applier.ops.recolor import recolor
from applier.ops.remove import remove
from applier.ops.tone import adjust, blur, drop_shadow, lift_shadow
from scripts.scenes import interior_scene, low_res_probability

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

SIZES_MP = {1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000)}


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and OpenCV's lazy initialisation
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(mp: int, repeat: int, only: tuple[str, ...] = ()) -> dict[str, object]:
    """One size: the copy baseline and every action, in ms, ms/MP and multiples of the copy."""
    w, h = SIZES_MP[mp]
    scene = interior_scene(w, h, seed=0)
    image = scene.image
    wall = scene.masks["Wall"].astype(np.float32)
    floor = scene.masks["Floor"].astype(np.float32)
    logo = scene.masks["Logo"].astype(np.float32)
    shadow_area = scene.masks["Sign"].astype(np.float32)
    megapixels = w * h / 1e6
    scratch = np.empty_like(image)
    copy_ms = _median_ms(lambda: np.copyto(scratch, image), repeat * 2)
    prob = low_res_probability(scene.masks["Wall"])
    actions: dict[str, Callable[[], object]] = {
        "recolor": lambda: recolor(image, wall, value="#5b7fa6"),
        "material (wood)": lambda: material(image, floor, texture="wood"),
        "remove (inpaint logo)": lambda: remove(image, logo, mode="inpaint"),
        "remove (transparent)": lambda: remove(image, wall, mode="transparent"),
        "blur": lambda: blur(image, wall, radius=1.0),
        "adjust": lambda: adjust(image, wall, brightness=0.1, contrast=0.1, saturation=0.2, warmth=0.2),
        "shadow (remove)": lambda: lift_shadow(image, shadow_area, strength=1.0),
        "shadow (add)": lambda: drop_shadow(image, shadow_area),
        "refine mask (288 -> photo)": lambda: refine_alpha(prob, image),
    }
    table: dict[str, object] = {}
    for name, fn in actions.items():
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        ms = _median_ms(fn, repeat if mp < 12 else max(2, repeat // 2))
        table[name] = {"ms": round(ms, 1), "ms_per_mp": round(ms / megapixels, 2), "x_copy": round(ms / copy_ms, 1)}
    return {"width": w, "height": h, "copy_ms": round(copy_ms, 2), "actions": table}


def run(sizes: tuple[int, ...] = (1, 4, 12), repeat: int = 5, only: tuple[str, ...] = ()) -> dict[str, object]:
    """Every size on one OpenCV thread; returns a JSON-serialisable dict (``make bench`` merges it)."""
    cv2.setNumThreads(1)
    return {"threads": 1, "repeat": repeat, "sizes": {f"{mp}MP": measure(mp, repeat, only) for mp in sizes}}


def markdown(results: dict[str, object]) -> str:
    sizes = results["sizes"]
    assert isinstance(sizes, dict)
    keys = list(sizes)
    names = list(next(iter(sizes.values()))["actions"])
    head = "| action | " + " | ".join(f"{k} ms/MP (x copy)" for k in keys) + " |"
    lines = [head, "|---|" + "---|" * len(keys)]
    for name in names:
        cells = [f"{sizes[k]['actions'][name]['ms_per_mp']} ({sizes[k]['actions'][name]['x_copy']}x)" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    copy = " | ".join(f"{sizes[k]['copy_ms']} ms" for k in keys)
    lines.append(f"| one memory pass (np.copyto) | {copy} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--sizes", default="1,4,12", help="megapixel sizes among 1,4,12")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--actions", default="", help="comma-separated name prefixes, e.g. recolor")
    args = parser.parse_args()
    only = tuple(a for a in args.actions.split(",") if a)
    results = run(tuple(int(s) for s in args.sizes.split(",")), args.repeat, only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(markdown(results))


if __name__ == "__main__":
    main()
