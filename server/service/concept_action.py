"""One concept's action in a rule, typed: what the services take from a request.

The request message holds an action as its name and its parameters (``ConceptAction``); rules and
jobs store it flattened, ``{"action": ..., **params}``, which is also the form the applier reads.
This module is the one place that converts between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTION_KEY = "action"
"""The key naming the action in the stored form; a parameter can never be called that."""


@dataclass(frozen=True)
class ConceptAction:
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if ACTION_KEY in self.params:
            raise ValueError(f"a parameter named {ACTION_KEY!r} would overwrite the action when stored")

    @classmethod
    def of(cls, action: str, params: Mapping[str, Any]) -> ConceptAction:
        """``action`` with ``params`` less one named like the action key (as the REST shim, which
        flattens an action the same way, cannot send one either)."""
        return cls(action, {k: v for k, v in params.items() if k != ACTION_KEY})

    @classmethod
    def from_stored(cls, entry: Mapping[str, Any]) -> ConceptAction:
        """An action as a rule or job row holds it (validated when it was stored)."""
        return cls.of(str(entry.get(ACTION_KEY, "")), entry)

    def stored(self) -> dict[str, Any]:
        return {ACTION_KEY: self.action, **self.params}


ConceptActions = Mapping[str, ConceptAction]
"""Concept id -> its action, as a create-rule, update-rule or execute request states them."""


def actions_from_stored(stored: Mapping[str, Mapping[str, Any]]) -> dict[str, ConceptAction]:
    return {concept: ConceptAction.from_stored(entry) for concept, entry in stored.items()}
