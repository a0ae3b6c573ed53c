from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from applier.errors import ParamError
from applier.instances import Selection, concept_layer, instance_order
from scripts.scenes import instance_masks, interior_scene, low_res_probability


@dataclass(frozen=True)
class FakeInstance:
    number: int
    score: float
    box_xyxy: tuple[float, float, float, float]
    area: int
    mask: npt.NDArray[np.uint8]


def _tiles() -> tuple[npt.NDArray[np.uint8], list[FakeInstance], list[npt.NDArray[np.bool_]]]:
    scene = interior_scene(640, 480, seed=4)
    truths = instance_masks(scene.masks["Tile"], min_area=800)[:6]
    instances = []
    for n, truth in enumerate(truths, start=1):
        ys, xs = np.nonzero(truth)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        instances.append(FakeInstance(n, 0.9, box, int(truth.sum()), low_res_probability(truth)))
    return scene.image, instances, truths


def test_union_excludes_and_locks() -> None:
    image, instances, truths = _tiles()
    layer = concept_layer("Tile", instances, image, Selection(exclude=frozenset({2}), lock=frozenset({3})))
    assert layer.used == (1, 4, 5, 6)
    core = layer.alpha >= 0.5
    for n, truth in enumerate(truths, start=1):
        covered = (core & truth).sum() / truth.sum()
        assert covered > 0.85 if n in layer.used else covered < 0.15
    assert list(layer.locked) == ["Tile#3"]
    assert ((layer.locked["Tile#3"] >= 0.5) & truths[2]).sum() > 0.85 * truths[2].sum()


def test_only_checks_the_listed_instances() -> None:
    image, instances, _ = _tiles()
    assert concept_layer("Tile", instances, image, Selection(only=frozenset({1, 2}))).used == (1, 2)


@pytest.mark.parametrize("field", ["exclude", "lock", "only"])
def test_unknown_instance_numbers_name_the_field(field: str) -> None:
    image, instances, _ = _tiles()
    with pytest.raises(ParamError) as info:
        concept_layer("Tile", instances, image, Selection.from_json({field: [99]}))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("data", "field"), [({"exclude": [0]}, "exclude"), ({"lock": ["1"]}, "lock"), ({"pick": [1]}, "pick")]
)
def test_selection_json_errors(data: dict[str, object], field: str) -> None:
    with pytest.raises(ParamError) as info:
        Selection.from_json(data)
    assert info.value.field == field


def test_numbering_is_reading_order_whatever_the_input_order() -> None:
    boxes = [(300.0, 10.0, 350.0, 60.0), (10.0, 12.0, 60.0, 62.0), (150.0, 200.0, 200.0, 250.0)]
    scores = [0.5, 0.9, 0.7]
    order = instance_order(boxes, scores)
    assert [boxes[i] for i in order] == [boxes[1], boxes[0], boxes[2]]
    rng = np.random.default_rng(0)
    perm = list(rng.permutation(3))
    shuffled = [boxes[i] for i in perm]
    again = instance_order(shuffled, [scores[i] for i in perm])
    assert [shuffled[i] for i in again] == [boxes[i] for i in order]
