"""docs/settings.md is generated from the settings' declarations and kept fresh."""

from __future__ import annotations

import dataclasses

import pytest

from scripts import gen_settings_doc
from server.config import Settings


def test_the_committed_settings_document_is_what_the_declarations_say() -> None:
    assert gen_settings_doc.DOC.read_text() == gen_settings_doc.render()
    assert gen_settings_doc.main(["--check"]) == 0


def test_a_changed_default_makes_the_document_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Changed(Settings):
        claim_batch: int = 7

    monkeypatch.setattr(gen_settings_doc, "Settings", Changed)
    assert "| `S3_CLAIM_BATCH` | integer | `7` |" in gen_settings_doc.render()
    assert gen_settings_doc.main(["--check"]) == 1


def test_every_setting_has_a_row() -> None:
    text = gen_settings_doc.render()
    for field in dataclasses.fields(Settings):
        assert f"| `S3_{field.name.upper()}` |" in text or field.name == "rate_limits_enabled"
    assert "| `S3_RATE_LIMITS` |" in text
