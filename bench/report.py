"""``docs/benchmarks.md``: generated sections between markers, hand-written text around them kept.

A section is ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``; a refresh replaces what is between
the two markers and nothing else. A section whose markers are missing is appended at the end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def replace_sections(text: str, sections: Mapping[str, str]) -> str:
    for name, body in sections.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        block = f"{start}\n{body.strip()}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        found = pattern.search(text)
        text = text[: found.start()] + block + text[found.end() :] if found else f"{text.rstrip()}\n\n{block}\n"
    return text


def refresh(path: Path, sections: Mapping[str, str], template: str) -> None:
    text = path.read_text() if path.exists() else template
    path.write_text(replace_sections(text, sections))


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
