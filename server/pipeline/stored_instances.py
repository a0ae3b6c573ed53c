"""The instances of one item as objects: a low-resolution mask per instance and ``{idx}_instances.json``.

An analysis writes them; an execute reads them back instead of segmenting those concepts again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from server import images
from server.inference.port import Instance, SegmenterInfo
from server.service.settle import AnalysisOutputs
from server.storage import keys
from server.storage.port import ObjectIO
from server.work import WorkJob


def store_instances(
    store: ObjectIO,
    model: SegmenterInfo,
    job: WorkJob,
    idx: int,
    found: Mapping[str, Sequence[Instance]],
    kept: Sequence[Mapping[str, Any]] = (),
) -> AnalysisOutputs:
    """Low-resolution masks of every instance plus ``{idx}_instances.json`` listing them and the
    ``kept`` records (concepts analysed before); returns every record and the bytes written."""
    records: list[dict[str, Any]] = [dict(r) for r in kept]
    written = 0
    for concept, instances in found.items():
        for inst in instances:
            mask_key = keys.instance_mask_key(job.user_id, job.id, idx, concept, inst.number)
            mask = images.encode_png(inst.mask, compress_level=3)
            store.put(mask_key, mask, content_type="image/png")
            written += len(mask)
            records.append(
                {
                    "concept": concept,
                    "number": inst.number,
                    "score": round(float(inst.score), 4),
                    "box": [round(float(v), 1) for v in inst.box_xyxy],
                    "area": int(inst.area),
                    "mask_key": mask_key,
                }
            )
    doc = json.dumps({"model": model.name, "meaningful": model.meaningful, "instances": records}).encode()
    store.put(keys.instances_key(job.user_id, job.id, idx), doc, content_type="application/json")
    return AnalysisOutputs(records, written + len(doc))


def read_instances(
    store: ObjectIO, records: Sequence[Mapping[str, Any]], concepts: Sequence[str]
) -> dict[str, list[Instance]]:
    """The stored instances of ``concepts``, masks read back, in instance-number order."""
    out: dict[str, list[Instance]] = {c: [] for c in concepts}
    for r in records:
        concept = str(r["concept"])
        if concept not in out:
            continue
        out[concept].append(
            Instance(
                concept=concept,
                number=int(r["number"]),
                score=float(r["score"]),
                box_xyxy=(float(r["box"][0]), float(r["box"][1]), float(r["box"][2]), float(r["box"][3])),
                area=int(r["area"]),
                mask=_read_gray_png(store.get(str(r["mask_key"]))),
            )
        )
    for found in out.values():
        found.sort(key=lambda i: i.number)
    return out


def _read_gray_png(data: bytes) -> npt.NDArray[np.uint8]:
    # A mask this pipeline wrote itself (its key is in the item's row): no limits to apply.
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
