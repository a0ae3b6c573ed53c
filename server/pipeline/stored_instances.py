"""The instances of one item as objects: a low-resolution mask per instance and ``{idx}_instances.json``.

An analysis writes them; an execute reads them back instead of segmenting those concepts again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from server import images
from server.inference.port import Instance, SegmenterInfo
from server.item_records import StoredInstance, encode_all
from server.service.settle import AnalysisOutputs
from server.storage import keys
from server.storage.port import ObjectIO
from server.work import PermanentFailure, WorkJob


def store_instances(
    store: ObjectIO,
    model: SegmenterInfo,
    job: WorkJob,
    idx: int,
    found: Mapping[str, Sequence[Instance]],
    kept: Sequence[StoredInstance] = (),
) -> AnalysisOutputs:
    """Low-resolution masks of every instance plus ``{idx}_instances.json`` listing them and the
    ``kept`` records (concepts analysed before); returns every record and the bytes written."""
    records = list(kept)
    written = 0
    for concept, instances in found.items():
        for inst in instances:
            mask_key = keys.instance_mask_key(job.user_id, job.id, idx, concept, inst.number)
            mask = images.encode_png(inst.mask, compress_level=3)
            store.put(mask_key, mask, content_type="image/png")
            written += len(mask)
            # Rounded: the stored records are served in every answer about the job; this is the
            # precision a client can use (a tenth of a pixel, four digits of a score).
            x0, y0, x1, y1 = (round(float(v), 1) for v in inst.box_xyxy)
            records.append(
                StoredInstance(
                    concept=concept,
                    number=inst.number,
                    score=round(float(inst.score), 4),
                    box=(x0, y0, x1, y1),
                    area=int(inst.area),
                    mask_key=mask_key,
                )
            )
    listing = {"model": model.name, "meaningful": model.meaningful, "instances": encode_all(records)}
    doc = json.dumps(listing).encode()
    store.put(keys.instances_key(job.user_id, job.id, idx), doc, content_type="application/json")
    return AnalysisOutputs(records, written + len(doc))


def read_instances(
    store: ObjectIO, records: Sequence[StoredInstance], concepts: Sequence[str]
) -> dict[str, list[Instance]]:
    """The stored instances of ``concepts``, masks read back, in instance-number order."""
    out: dict[str, list[Instance]] = {c: [] for c in concepts}
    for r in records:
        if r.concept not in out:
            continue
        if r.mask_key is None:
            # Reported by a callback, which stores no masks: nothing to build a layer from.
            raise PermanentFailure(f"the stored {r.concept} #{r.number} has no mask")
        out[r.concept].append(
            Instance(
                concept=r.concept,
                number=r.number,
                score=r.score,
                box_xyxy=r.box,
                area=r.area,
                mask=_read_gray_png(store.get(r.mask_key)),
            )
        )
    for found in out.values():
        found.sort(key=lambda i: i.number)
    return out


def _read_gray_png(data: bytes) -> npt.NDArray[np.uint8]:
    # A mask this pipeline wrote itself (its key is in the item's row): no limits to apply.
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
