"""The instance choices of an execute request: which numbered instances a rule skips or locks.

``{"<idx>": {"<Concept>": {"exclude": [2], "lock": [1]}}}``, checked against the job's items and,
where an analysis stored them, against the instance numbers that exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.db.tables import JobItemRow
from server.errors import ValidationFailed

MAX_INSTANCE_NUMBER = 1000

Choices = dict[str, dict[str, dict[str, list[int]]]]


def instance_choices(instances: Mapping[str, Any], items: Sequence[JobItemRow], concept_ids: Sequence[str]) -> Choices:
    """The choices in their stored form (numbers deduplicated and sorted), or ``ValidationFailed``
    naming the first bad field."""
    by_idx = {i.idx: i for i in items}
    out: Choices = {}
    if not isinstance(instances, Mapping):
        raise ValidationFailed("instances: must be an object keyed by item index", field="instances")
    for raw_idx, per_concept in instances.items():
        path = f"instances.{raw_idx}"
        try:
            idx = int(raw_idx)
        except (TypeError, ValueError):
            raise ValidationFailed(f"{path}: keys must be item indexes", field=path) from None
        item = by_idx.get(idx)
        if item is None:
            raise ValidationFailed(f"{path}: the job has no item {idx}", field=path)
        if not isinstance(per_concept, Mapping):
            raise ValidationFailed(f"{path}: must be an object keyed by concept", field=path)
        known_numbers: dict[str, set[int]] = {}
        for inst in item.instances or []:
            known_numbers.setdefault(inst.concept, set()).add(inst.number)
        out_item: dict[str, dict[str, list[int]]] = {}
        for concept, choice in per_concept.items():
            cpath = f"{path}.{concept}"
            if concept not in concept_ids:
                raise ValidationFailed(f"{cpath}: unknown concept", field=cpath)
            if not isinstance(choice, Mapping):
                raise ValidationFailed(f"{cpath}: must be an object with exclude and/or lock", field=cpath)
            unknown = set(choice) - {"exclude", "lock"}
            if unknown:
                raise ValidationFailed(f"{cpath}.{sorted(unknown)[0]}: unknown field", field=cpath)
            clean: dict[str, list[int]] = {}
            for kind in ("exclude", "lock"):
                numbers = choice.get(kind, [])
                kpath = f"{cpath}.{kind}"
                if not isinstance(numbers, Sequence) or isinstance(numbers, str):
                    raise ValidationFailed(f"{kpath}: must be a list of instance numbers", field=kpath)
                nums: list[int] = []
                for n in numbers:
                    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_INSTANCE_NUMBER:
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
