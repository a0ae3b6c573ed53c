"""Instances of a concept (#1..#N) and the selection a user makes among them.

Segmenters return every instance of a concept with a box, a score, an area and a low-resolution mask.
The user may exclude some (the rule then ignores them) and lock some (they become protect layers,
named ``Concept#n``). ``concept_layer`` turns that into the alpha a rule acts on and the locked alphas.
Any object with the attributes of ``InstanceLike`` works, e.g. ``server.inference.port.Instance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from applier.errors import MaskError, ParamError
from applier.masks import refine_alpha

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


class InstanceLike(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def score(self) -> float: ...

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]: ...

    @property
    def area(self) -> int: ...

    @property
    def mask(self) -> U8: ...


@dataclass(frozen=True)
class Selection:
    """What the user picked among a concept's instances (numbers are 1-based)."""

    exclude: frozenset[int] = frozenset()
    lock: frozenset[int] = frozenset()
    only: frozenset[int] | None = None
    """When set, only these instances are checked (used by the rule); the others are left alone."""

    @classmethod
    def from_json(cls, data: object) -> Selection:
        """From the API shape ``{"exclude": [2], "lock": [1], "only": [...]}``; errors name the field."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ParamError("instances", "must be an object with exclude / lock / only lists")
        unknown = set(data) - {"exclude", "lock", "only"}
        if unknown:
            raise ParamError(sorted(unknown)[0], "unknown instance selection field")

        def numbers(key: str) -> frozenset[int]:
            values = data.get(key, [])
            ok = isinstance(values, list) and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
            )
            if not ok:
                raise ParamError(key, "must be a list of instance numbers (integers >= 1)")
            return frozenset(values)

        only = numbers("only") if "only" in data else None
        return cls(exclude=numbers("exclude"), lock=numbers("lock"), only=only)


@dataclass(frozen=True)
class ConceptLayer:
    """The alpha a rule acts on for one concept, and the instances locked against it."""

    concept: str
    alpha: F32
    """HxW float32 in [0, 1]: union of the checked, not excluded, not locked instances."""
    used: tuple[int, ...]
    locked: dict[str, F32] = field(default_factory=dict)
    """Protect layers of the locked instances, named ``Concept#n``."""


def instance_order(boxes: Sequence[tuple[float, float, float, float]], scores: Sequence[float]) -> list[int]:
    """Deterministic numbering: indices of instances in reading order (rows of box centres, then x).

    Two runs that find the same instances number them the same, whatever order the model emitted.
    """

    def key(i: int) -> tuple[int, float, float]:
        x0, y0, x1, y1 = boxes[i]
        height = max(y1 - y0, 1.0)
        # Instances whose centres are within half a box height share a row: read left to right.
        return (round(((y0 + y1) / 2) / (height / 2)), (x0 + x1) / 2, -scores[i])

    return sorted(range(len(boxes)), key=key)


def _union(masks: Sequence[U8]) -> U8:
    target = masks[0].shape
    out = np.zeros(target, np.uint8)
    for m in masks:
        if m.shape != target:
            m = np.asarray(cv2.resize(m, (target[1], target[0]), interpolation=cv2.INTER_LINEAR), np.uint8)
        out = np.maximum(out, m)
    return out


def concept_layer(
    concept: str, instances: Sequence[InstanceLike], image: U8, selection: Selection | None = None
) -> ConceptLayer:
    """Refine the selected instances of ``concept`` to ``image`` (HxWx3 RGB uint8).

    Raises ``ParamError`` (field ``exclude``, ``lock`` or ``only``) for a number with no instance.
    """
    selection = selection or Selection()
    numbers = {inst.number for inst in instances}
    for name, chosen in (("exclude", selection.exclude), ("lock", selection.lock), ("only", selection.only)):
        missing = sorted((chosen or frozenset()) - numbers)
        if missing:
            raise ParamError(name, f"{concept} has no instance #{missing[0]} (it has {len(numbers)})")
    h, w = image.shape[:2]
    used = [
        inst
        for inst in instances
        if inst.number not in selection.exclude
        and inst.number not in selection.lock
        and (selection.only is None or inst.number in selection.only)
    ]
    alpha = refine_alpha(_union([inst.mask for inst in used]), image) if used else np.zeros((h, w), np.float32)
    locked = {
        f"{concept}#{inst.number}": refine_alpha(inst.mask, image)
        for inst in instances
        if inst.number in selection.lock
    }
    return ConceptLayer(concept, alpha, tuple(inst.number for inst in used), locked)


def alpha_from_mask(mask: npt.NDArray[np.bool_] | U8) -> F32:
    """A full-resolution mask (bool, or uint8 0..255) as a float32 alpha."""
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if mask.dtype != np.uint8:
        raise MaskError(f"mask must be bool or uint8, got {mask.dtype}")
    return np.asarray(mask, np.float32) * np.float32(1 / 255)
