from __future__ import annotations

import pytest

from gateway_rest.prefer import requested_wait_s


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("wait=5", 5),
        ("WAIT = 7", 7),
        ('wait="9"', 9),
        ("respond-async, wait=10", 10),
        ("handling=lenient; wait=3", 3),
        ("wait=600", 60),
        ("wait=0", 0),
        ("wait=-1", None),
        ("wait=soon", None),
        ("wait=1.5", None),
        ("waiting=5", None),
    ],
)
def test_the_wait_preference_is_parsed_and_capped(header: str | None, expected: int | None) -> None:
    assert requested_wait_s(header, max_s=60) == expected
