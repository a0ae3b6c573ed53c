"""Hostile photos through the whole REST flow, in one album with good photos: presigned uploads to
the gateway, confirm, execute, then real workers (the pipeline with the tiny SAM3 on onnxruntime).

Every file is either processed correctly or refused with a clear contract code on its own item, and
the rest of the album goes on: the job ends ``done``, only the usable photos are charged, the others
are refunded, and the credit invariant holds.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from server.db.tables import UserRow
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, err, live_rest, ok, sign_up
from tests.support.pipeline import job_items, link_tiny_model, photo_jpeg, process_jobs

pytestmark = pytest.mark.integration

MAX_UPLOAD_BYTES = 200_000
W, H = 96, 64


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _rgb(seed: int) -> Image.Image:
    return Image.open(io.BytesIO(photo_jpeg(W, H, seed=seed))).convert("RGB")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb() -> bytes:
    """A valid-looking 100000x100000 RGB PNG of a few dozen bytes: the header alone must stop it."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def exif_rotated() -> bytes:
    """Stored 96x64 with EXIF orientation 6 (turn 90 degrees clockwise): a 64x96 photo to a person."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_rgb(7), "JPEG", exif=exif.tobytes())


def animated_png() -> bytes:
    frames = [_rgb(s) for s in (8, 9, 10)]
    return _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    ramp = (np.arange(W * H, dtype=np.uint32).reshape(H, W) * 13 % 65536).astype(np.uint16)
    return _save(Image.fromarray(ramp), "PNG")


def rgba_png() -> bytes:
    rgba = _rgb(11).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    return _save(rgba, "PNG")


GOOD = photo_jpeg(W, H, seed=1)
PNG = _save(_rgb(2), "PNG")

# name -> (bytes, content type the client declares, expected item outcome: "done" or the error code)
ALBUM: dict[str, tuple[bytes, str, str]] = {
    "good": (GOOD, "image/jpeg", "done"),
    "good png": (PNG, "image/png", "done"),
    "not an image": (b"%PDF-1.7\n" + b"\x00" * 500, "image/jpeg", "VALIDATION_ERROR"),
    "truncated jpeg": (GOOD[: len(GOOD) // 2], "image/jpeg", "VALIDATION_ERROR"),
    "truncated png": (PNG[: len(PNG) * 2 // 3], "image/png", "VALIDATION_ERROR"),
    "decompression bomb": (decompression_bomb(), "image/png", "PAYLOAD_TOO_LARGE"),
    "zero bytes": (b"", "image/jpeg", "VALIDATION_ERROR"),
    "cmyk jpeg": (_save(_rgb(3).convert("CMYK"), "JPEG"), "image/jpeg", "done"),
    "16-bit png": (sixteen_bit_png(), "image/png", "done"),
    "grayscale jpeg": (_save(_rgb(4).convert("L"), "JPEG"), "image/jpeg", "done"),
    "alpha png": (rgba_png(), "image/png", "done"),
    "animated png": (animated_png(), "image/png", "done"),
    "exif rotated jpeg": (exif_rotated(), "image/jpeg", "done"),
    # The gateway refuses the swap (the URL was sealed at confirm): the confirmed photo is processed.
    "replaced after confirm": (photo_jpeg(W, H, seed=5), "image/jpeg", "done"),
    # Written past the gateway, as an S3 presigned URL still can: the worker sees the hash differ.
    "bomb swapped in after confirm": (photo_jpeg(W, H, seed=13), "image/png", "VALIDATION_ERROR"),
    "webp after a refused oversized upload": (_save(_rgb(6), "WEBP"), "image/webp", "done"),
}
NAMES = list(ALBUM)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveRest]:
    data_dir = link_tiny_model(tmp_path / "data")
    with live_rest(
        f"sqlite:///{tmp_path / 's3.db'}", data_dir, inference="onnx", max_upload_bytes=MAX_UPLOAD_BYTES
    ) as served:
        yield served


def test_hostile_photos_in_one_album(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, user_id = sign_up(http)
    with live.stack.db.write() as s:  # a pro user: the album is larger than the free plan's 10 photos
        user = s.get(UserRow, user_id)
        assert user is not None
        user.plan = "pro"

    content_types = [ALBUM[n][1] for n in NAMES]
    created = ok(
        http.post(
            "/jobs", json={"preset": "interior", "item_count": len(NAMES), "content_types": content_types}, headers=auth
        ),
        201,
    )
    job_id = created["job_id"]
    targets = created["upload_urls"]
    for name, target in zip(NAMES, targets, strict=True):
        data = ALBUM[name][0]
        if name.startswith("webp after"):
            too_big = photo_jpeg(800, 600, seed=12) + b"\x00" * MAX_UPLOAD_BYTES
            err(http.put(target["url"], content=too_big, headers=target["headers"]), 413, "PAYLOAD_TOO_LARGE")
        ok(http.put(target["url"], content=data, headers=target["headers"]))

    job = ok(http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
    swapped_later = {
        "replaced after confirm": b"\xff\xd8\xff\xe0 not really a jpeg",
        "bomb swapped in after confirm": decompression_bomb(),
    }
    refused_at_confirm = {n for n in NAMES if ALBUM[n][2] != "done" and n not in swapped_later}
    for name, item in zip(NAMES, job["items"], strict=True):
        if name in refused_at_confirm:
            assert item["status"] == "failed" and item["error"].startswith(ALBUM[name][2] + ":"), (name, item)
        else:
            assert item["status"] == "uploaded", (name, item)
    assert job["status"] == "uploaded"

    # A client tries to swap checked photos for hostile files after confirm: the presigned URL is
    # sealed (403); the object written past the gateway (what an S3 URL that cannot be revoked can
    # still do) is refused by the worker, whose pinned sha256 no longer matches.
    replaced = targets[NAMES.index("replaced after confirm")]
    swap = http.put(replaced["url"], content=swapped_later["replaced after confirm"], headers=replaced["headers"])
    err(swap, 403, "FORBIDDEN")
    bomb_key = targets[NAMES.index("bomb swapped in after confirm")]["key"]
    live.stack.store.put(bomb_key, swapped_later["bomb swapped in after confirm"], content_type="image/png")

    rule = {"concepts": {"Wall": {"action": "recolor", "value": "white"}}, "protect": ["edges"]}
    assert ok(http.post(f"/jobs/{job_id}/execute", json=rule, headers=auth))["status"] == "queued"
    process_jobs(live.stack, [job_id], workers=2, timeout_s=240)

    job = ok(http.get(f"/jobs/{job_id}", headers=auth))
    for name, item in zip(NAMES, job["items"], strict=True):
        expected = ALBUM[name][2]
        if expected == "done":
            assert item["status"] == "done" and item["output_url"], (name, item)
            assert http.get(item["output_url"]).status_code == 200
        else:
            assert item["status"] == "failed" and item["error"].startswith(expected + ":"), (name, item)
    done = sum(1 for n in NAMES if ALBUM[n][2] == "done")
    assert (job["status"], job["done_items"], job["failed_items"]) == ("done", done, len(NAMES) - done)
    assert job["set_url"] and http.get(job["set_url"]).status_code == 200
    me = ok(http.get("/me", headers=auth))
    assert (me["credits"], me["credits_spent"], me["credits_reserved"]) == (100 - done, done, 0)

    rows = {NAMES[r.idx]: r for r in job_items(live.stack.db, job_id)}
    assert (rows["exif rotated jpeg"].width, rows["exif rotated jpeg"].height) == (H, W)
    assert (rows["cmyk jpeg"].width, rows["cmyk jpeg"].height) == (W, H)
    # The processed bytes are the confirmed ones, and a swapped file fails on its first attempt: it
    # can never succeed, so it is not retried.
    confirmed = hashlib.sha256(ALBUM["replaced after confirm"][0]).hexdigest()
    assert (rows["replaced after confirm"].protect_check or {})["source_sha256"] == confirmed
    swapped = rows["bomb swapped in after confirm"]
    assert swapped.attempts == 1 and "replaced after confirm-upload" in (swapped.error or ""), swapped.error
    check_invariants(live.stack.db)
    http.close()


def test_create_upload_cancel_loop_is_refused_and_canceled_uploads_are_closed(live: LiveRest) -> None:
    """The free-disk loop through the REST API: create, upload, cancel (full refund), again. The
    upload URL dies with the cancel (403), the canceled job hands out no URL to its photo, and the
    loop ends in 507 QUOTA_EXCEEDED with every credit back."""
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    rounds = 0
    while True:
        answer = http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth)
        if answer.status_code != 201:
            err(answer, 507, "QUOTA_EXCEEDED")
            break
        target = answer.json()["data"]["upload_urls"][0]
        ok(http.put(target["url"], content=GOOD, headers=target["headers"]))
        job_id = answer.json()["data"]["job_id"]
        ok(http.post(f"/jobs/{job_id}/cancel", headers=auth))
        err(http.put(target["url"], content=PNG, headers=target["headers"]), 403, "FORBIDDEN")
        assert ok(http.get(f"/jobs/{job_id}", headers=auth))["items"][0]["input_url"] is None
        rounds += 1
        assert rounds <= 60, "never refused"
    me = ok(http.get("/me", headers=auth))
    assert me["live_jobs"] == me["live_jobs_max"] == rounds
    assert (me["credits"], me["credits_reserved"], me["credits_spent"]) == (100, 0, 0)
    check_invariants(live.stack.db)
    http.close()
