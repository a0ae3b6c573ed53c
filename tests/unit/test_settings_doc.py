"""docs/settings.md is generated from the settings' declarations and kept fresh."""

from __future__ import annotations

import dataclasses

import pytest

from scripts import gen_settings_doc
from server import settings_env
from server.config import Settings
from server.config.sections import QueueConfig


def test_the_committed_settings_document_is_what_the_declarations_say() -> None:
    assert gen_settings_doc.DOC.read_text() == gen_settings_doc.render()
    assert gen_settings_doc.main(["--check"]) == 0


@dataclasses.dataclass(frozen=True)
class ChangedQueue(QueueConfig):
    claim_batch: int = 7


@dataclasses.dataclass(frozen=True)
class Changed(Settings):
    """Settings whose queue section has another default (module level: its hints must resolve)."""

    queue: ChangedQueue = dataclasses.field(default_factory=ChangedQueue)


def test_a_changed_default_makes_the_document_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen_settings_doc, "Settings", Changed)
    assert "| `S3_CLAIM_BATCH` | integer | `7` |" in gen_settings_doc.render()
    assert gen_settings_doc.main(["--check"]) == 1


def test_every_setting_has_a_row() -> None:
    text = gen_settings_doc.render()
    leaves = settings_env.leaves(Settings)
    for leaf in leaves:
        assert f"| `{leaf.variable}` |" in text
    assert text.count("| `S3_") == len(leaves) > 70
    # Under the heading of the section that declares it, with its description.
    queue = text.index("## `QueueConfig`")
    assert (
        queue
        < text.index("| `S3_LEASE_S` | number | `10.0` | How long a worker owns")
        < text.index("## `SweeperConfig`")
    )
