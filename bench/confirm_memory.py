"""Peak memory of ``confirm-upload`` in the API process, for photos that are small on the wire but
large once decoded (flat 6000x5000 photos: ~460 kB as JPEG, ~90 kB as PNG, 90 MB of RGB each).

Each measurement runs in a fresh child process (``ru_maxrss`` is a high-water mark), on SQLite and
the local store, through the real ``Jobs.confirm_upload``. Also measured: a confirm refused for one
missing photo, which should read nothing.

    python -m bench.confirm_memory            # prints one JSON line per case
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

PHOTOS = 4
SIZE = (6000, 5000)


def _flat(seed: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, (90 + seed, 120, 150)).save(buf, format=fmt)
    return buf.getvalue()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(case: str) -> dict[str, object]:
    from server.errors import ValidationFailed
    from tests.support.stack import make_stack

    with tempfile.TemporaryDirectory() as tmp:
        stack = make_stack(f"sqlite:///{tmp}/b.db", Path(tmp) / "data", max_image_pixels=40_000_000)
        user = stack.services.accounts.create_anonymous().user.user_id
        created = stack.services.jobs.create(user, preset_id="interior", item_count=PHOTOS)
        fmt = "PNG" if case.startswith("png") else "JPEG"
        photos = [_flat(i, fmt) for i in range(PHOTOS)]
        uploads = created.uploads[:-1] if case.endswith("one missing") else created.uploads
        for target, data in zip(uploads, photos, strict=False):
            stack.store.put(target.key, data, content_type=f"image/{fmt.lower()}")
        before = _rss_mib()
        started = time.perf_counter()
        outcome = "uploaded"
        try:
            stack.services.jobs.confirm_upload(user, created.job.job_id)
        except ValidationFailed as e:
            outcome = e.code
        seconds = time.perf_counter() - started
        return {
            "case": case,
            "photos": PHOTOS,
            "upload_kb": round(sum(len(p) for p in photos[: len(uploads)]) / 1024, 1),
            "outcome": outcome,
            "rss_growth_mib": round(_rss_mib() - before, 1),
            "seconds": round(seconds, 2),
        }


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1])))
        return
    for case in ("jpeg", "jpeg, one missing", "png"):
        subprocess.run([sys.executable, "-m", "bench.confirm_memory", case], check=True)


if __name__ == "__main__":
    main()
