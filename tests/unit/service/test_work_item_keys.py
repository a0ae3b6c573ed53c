"""What a remote worker may sign or report: only its claimed item's own objects, never the photo
(for writing), the job's set, another item, job or user."""

from __future__ import annotations

import pytest

from server.errors import Forbidden, ValidationFailed
from server.service.work_leases import item_key
from server.storage import keys
from server.work import WorkJob

USER = "0f3e6a52-8b0b-4c3e-9a55-2b1b1e7f0d01"
JOB = "5b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
WORK = WorkJob(JOB, USER, "interior", None, None, None, None, None)


@pytest.mark.parametrize(
    "key",
    [
        keys.output_key(USER, JOB, 1),
        keys.preview_key(USER, JOB, 1),
        keys.rendition_key(USER, JOB, 1, "square_1080", "jpg"),
        keys.mask_key(USER, JOB, 1, "Wall"),
        keys.instance_mask_key(USER, JOB, 1, "Wall", 3),
        keys.instances_key(USER, JOB, 1),
    ],
)
def test_the_items_own_outputs_are_writable(key: str) -> None:
    assert item_key(WORK, 1, key, write=True) == key


def test_the_photo_is_readable_but_not_writable() -> None:
    photo = keys.input_key(USER, JOB, 1)
    assert item_key(WORK, 1, photo, write=False) == photo
    with pytest.raises(Forbidden):
        item_key(WORK, 1, photo, write=True)


@pytest.mark.parametrize(
    "key",
    [
        keys.output_key(USER, JOB, 11),  # item 11 starts with "1"
        keys.output_key(USER, JOB, 2),
        keys.input_key(USER, JOB, 12),
        keys.output_key(USER, OTHER, 1),
        keys.output_key(OTHER, JOB, 1),
        keys.set_key(USER, JOB),
        "outputs/elsewhere.png",
    ],
)
def test_anything_else_is_refused(key: str) -> None:
    for write in (False, True):
        with pytest.raises(Forbidden):
            item_key(WORK, 1, key, write=write)


def test_a_key_outside_the_grammar_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        item_key(WORK, 1, f"outputs/{USER}/{JOB}/../x", write=False)
