"""Object keys follow the contract's layout and can only be built from validated parts."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.storage import keys

USER = "0b6f5a52-8a57-4c38-9d1f-6f0e1d2c3b4a"
JOB = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def test_layout_matches_the_contract() -> None:
    assert keys.input_key(USER, JOB, 0) == f"inputs/{USER}/{JOB}/0.jpg"
    assert keys.output_key(USER, JOB, 3) == f"outputs/{USER}/{JOB}/3_result.png"
    assert keys.mask_key(USER, JOB, 3, "Wall") == f"masks/{USER}/{JOB}/3_Wall.png"
    assert keys.instances_key(USER, JOB, 3) == f"masks/{USER}/{JOB}/3_instances.json"
    assert keys.preview_key(USER, JOB, 3) == f"previews/{USER}/{JOB}/3_thumb.jpg"
    assert keys.set_key(USER, JOB) == f"sets/{USER}/{JOB}/set.zip"
    assert keys.rendition_key(USER, JOB, 3, "square_1080", "webp") == f"outputs/{USER}/{JOB}/3/square_1080.webp"
    assert keys.instance_mask_key(USER, JOB, 3, "Wall", 2) == f"masks/{USER}/{JOB}/3/Wall/2.png"


def test_uuid_objects_are_accepted_as_ids() -> None:
    assert keys.input_key(uuid.UUID(USER), uuid.UUID(JOB), 1) == f"inputs/{USER}/{JOB}/1.jpg"


def test_instance_masks_cannot_collide_with_a_concept_named_like_an_instance() -> None:
    assert keys.mask_key(USER, JOB, 0, "Wall_2") != keys.instance_mask_key(USER, JOB, 0, "Wall", 2)


@pytest.mark.parametrize(
    "user_id",
    ["", "..", "../x", "a/b", "A0B1", "-lead", "a b", "a\\b", "x\n", "é", "a" * 65, ".hidden"],
)
def test_bad_user_ids_are_refused(user_id: str) -> None:
    with pytest.raises(ValueError, match="user_id"):
        keys.input_key(user_id, JOB, 0)


@pytest.mark.parametrize("idx", [-1, True, 1.0, "1"])
def test_bad_indexes_are_refused(idx: object) -> None:
    with pytest.raises(ValueError, match="idx"):
        keys.input_key(USER, JOB, idx)  # type: ignore[arg-type]


@pytest.mark.parametrize("concept", ["", "a.b", "../etc", "Wall/Floor", "W all", "x" * 65, "Wand\x00"])
def test_bad_concepts_are_refused(concept: str) -> None:
    with pytest.raises(ValueError, match="concept"):
        keys.mask_key(USER, JOB, 0, concept)


@pytest.mark.parametrize("ext", ["", "PNG", "p.g", "png/", "averylongext"])
def test_bad_extensions_are_refused(ext: str) -> None:
    with pytest.raises(ValueError, match="ext"):
        keys.rendition_key(USER, JOB, 0, "square", ext)


def test_instance_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="number"):
        keys.instance_mask_key(USER, JOB, 0, "Wall", 0)


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "a/", "../x", "a/../b", "a/..b", "a\\b", "a/.hidden", ".", "a\nb", "a\x00", "é", "a b"],
)
def test_validate_key_refuses_dangerous_keys(key: str) -> None:
    with pytest.raises(ValueError):
        keys.validate_key(key)


def test_validate_key_refuses_overlong_keys() -> None:
    with pytest.raises(ValueError):
        keys.validate_key("a" * 1025)
    assert keys.validate_key("a" * 1024) == "a" * 1024


def _is_safe(key: str) -> bool:
    return (
        ".." not in key
        and not key.startswith("/")
        and "\\" not in key
        and "//" not in key
        and all(0x20 < ord(c) < 0x7F for c in key)
    )


@given(
    user=st.text(max_size=70),
    job=st.text(max_size=70),
    idx=st.integers(min_value=-5, max_value=10**6),
    concept=st.text(max_size=70),
)
def test_any_built_key_is_safe_or_refused(user: str, job: str, idx: int, concept: str) -> None:
    builders: list[Callable[[], str]] = [
        lambda: keys.input_key(user, job, idx),
        lambda: keys.mask_key(user, job, idx, concept),
        lambda: keys.instance_mask_key(user, job, idx, concept, 1),
        lambda: keys.rendition_key(user, job, idx, concept, "png"),
    ]
    for build in builders:
        try:
            key = build()
        except ValueError:
            continue
        assert _is_safe(key)
        assert keys.validate_key(key) == key


@given(st.text(max_size=200))
def test_validate_key_only_passes_safe_keys(key: str) -> None:
    try:
        keys.validate_key(key)
    except ValueError:
        return
    assert _is_safe(key)
    assert not any(part in ("", ".", "..") or part.startswith(".") for part in key.split("/"))


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), st.integers(0, 10**6))
def test_valid_parts_always_build(user: str, idx: int) -> None:
    assert keys.input_key(user, user, idx) == f"inputs/{user}/{user}/{idx}.jpg"


def test_download_file_names_follow_the_key() -> None:
    user, job = "11111111-2222-3333-4444-555555555555", "abcdef01-2222-3333-4444-555555555555"
    assert keys.download_filename(keys.set_key(user, job)) == "s3-abcdef01-set.zip"
    assert (
        keys.download_filename(keys.rendition_key(user, job, 3, "square_1080", "jpg"))
        == "s3-abcdef01-3-square_1080.jpg"
    )
    assert keys.download_filename(keys.output_key(user, job, 0)) == "s3-abcdef01-0_result.png"
    assert keys.download_filename("other.bin") == "other.bin"
