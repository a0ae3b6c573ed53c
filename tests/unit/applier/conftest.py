from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from scripts.scenes import Scene, interior_scene, seller_scene

G = TypeVar("G", bound=np.generic)


def frozen(array: npt.NDArray[G]) -> npt.NDArray[G]:
    """A read-only copy: any in-place write by the code under test raises ValueError."""
    out = array.copy()
    out.setflags(write=False)
    return out


@pytest.fixture(scope="session")
def interior() -> Scene:
    return interior_scene(640, 480, seed=3)


@pytest.fixture(scope="session")
def seller() -> Scene:
    return seller_scene(480, 480, seed=5)


def layers_of(scene: Scene) -> dict[str, npt.NDArray[np.float32]]:
    return {name: mask.astype(np.float32) for name, mask in scene.masks.items()}
