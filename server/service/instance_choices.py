"""The instance choices of an execute request: which numbered instances a rule skips or locks.

Requested as ``{idx: {"<Concept>": InstanceChoice(exclude=(2,), lock=(1,))}}`` (the servicer
decodes it from the request), checked against the job's items and, where an analysis stored them,
against the instance numbers that exist; stored on the job as
``{"<idx>": {"<Concept>": {"exclude": [2], "lock": [1]}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.db.tables import JobItemRow
from server.errors import ValidationFailed

MAX_INSTANCE_NUMBER = 1000


@dataclass(frozen=True)
class InstanceChoice:
    """One concept's choice in one item: instance numbers the rule leaves alone or keeps intact."""

    exclude: tuple[int, ...] = ()
    lock: tuple[int, ...] = ()


ChoiceRequest = Mapping[int, Mapping[str, InstanceChoice]]
"""Item index -> concept -> its choice, as an execute request states them."""

Choices = dict[str, dict[str, dict[str, list[int]]]]
"""The stored form (JSON keys are strings)."""


def instance_choices(requested: ChoiceRequest, items: Sequence[JobItemRow], concept_ids: Sequence[str]) -> Choices:
    """The choices in their stored form (numbers deduplicated and sorted), or ``ValidationFailed``
    naming the first bad field."""
    by_idx = {i.idx: i for i in items}
    out: Choices = {}
    for idx, per_concept in requested.items():
        path = f"instances.{idx}"
        item = by_idx.get(idx)
        if item is None:
            raise ValidationFailed(f"{path}: the job has no item {idx}", field=path)
        known_numbers: dict[str, set[int]] = {}
        for inst in item.instances or []:
            known_numbers.setdefault(inst.concept, set()).add(inst.number)
        out_item: dict[str, dict[str, list[int]]] = {}
        for concept, choice in per_concept.items():
            cpath = f"{path}.{concept}"
            if concept not in concept_ids:
                raise ValidationFailed(f"{cpath}: unknown concept", field=cpath)
            clean: dict[str, list[int]] = {}
            for kind, numbers in (("exclude", choice.exclude), ("lock", choice.lock)):
                kpath = f"{cpath}.{kind}"
                nums: list[int] = []
                for n in numbers:
                    if not 1 <= n <= MAX_INSTANCE_NUMBER:
                        raise ValidationFailed(f"{kpath}: instance numbers are integers from 1", field=kpath)
                    if concept in known_numbers and n not in known_numbers[concept]:
                        raise ValidationFailed(f"{kpath}: item {idx} has no {concept} #{n}", field=kpath)
                    if n not in nums:
                        nums.append(n)
                clean[kind] = sorted(nums)
            if set(clean["exclude"]) & set(clean["lock"]):
                raise ValidationFailed(f"{cpath}: an instance cannot be both excluded and locked", field=cpath)
            out_item[concept] = clean
        out[str(idx)] = out_item
    return out
