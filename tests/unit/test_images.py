"""Reading uploaded photos: formats, limits before decoding, truncation, colour modes, orientation."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile, ImageOps

from server.errors import PayloadTooLarge, ValidationFailed
from server.images import decode_rgb, encode_png, probe

LIMIT = 50_000_000


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _noise(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _close(actual: npt.NDArray[np.uint8], expected: tuple[int, int, int], tolerance: int = 3) -> bool:
    return bool(np.all(np.abs(actual.astype(int) - np.array(expected)) <= tolerance))


# ---- refusals -----------------------------------------------------------------------------------


def test_zero_bytes_are_refused() -> None:
    for call in (probe, decode_rgb):
        with pytest.raises(ValidationFailed, match="empty"):
            call(b"", max_pixels=LIMIT)


@pytest.mark.parametrize("data", [b"hello world", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBP"])
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(ValidationFailed):
        probe(data, max_pixels=LIMIT)
    with pytest.raises(ValidationFailed):
        decode_rgb(data, max_pixels=LIMIT)


def test_other_formats_are_refused_even_when_pillow_reads_them() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    for data in (gif, _save(Image.new("RGB", (8, 8)), "BMP"), _save(Image.new("RGB", (8, 8)), "TIFF")):
        with pytest.raises(ValidationFailed, match="JPEG, PNG or WebP"):
            decode_rgb(data, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_refused_not_half_decoded(fmt: str) -> None:
    data = _save(Image.fromarray(_noise(256, 256)), fmt)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for cut in (len(data) // 2, len(data) - 8):
        truncated = data[:cut]
        with pytest.raises(ValidationFailed):
            decode_rgb(truncated, max_pixels=LIMIT)


def test_truncated_file_still_probes_from_its_header() -> None:
    data = _save(Image.fromarray(_noise(64, 96)), "JPEG")
    info = probe(data[: len(data) // 2], max_pixels=LIMIT)
    assert (info.width, info.height) == (96, 64)


def test_decompression_bomb_is_refused_without_decoding() -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 100
    tracemalloc.start()
    try:
        for call in (probe, decode_rgb):
            with pytest.raises(PayloadTooLarge):
                call(bomb, max_pixels=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Decoding would need 30 GB; the refusal needs next to nothing.
    assert peak < 5_000_000


def test_pixel_limit_is_checked_from_the_header() -> None:
    # Below Pillow's own bomb threshold, so this is our check speaking, with the numbers in it.
    header = _png_header_only(5_000, 5_000)
    with pytest.raises(PayloadTooLarge, match="5000x5000 = 25000000 pixels; the limit is 1000000"):
        probe(header, max_pixels=1_000_000)
    with pytest.raises(PayloadTooLarge):
        decode_rgb(header, max_pixels=1_000_000)


def test_pixel_limit_is_inclusive() -> None:
    data = _save(Image.new("RGB", (10, 10), "white"), "PNG")
    assert probe(data, max_pixels=100).width == 10
    assert decode_rgb(data, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(PayloadTooLarge):
        decode_rgb(data, max_pixels=99)


def test_truncation_tolerance_switched_on_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode_rgb(_save(Image.new("RGB", (4, 4)), "PNG"), max_pixels=LIMIT)


# ---- probing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_probe_reports_format_and_size(fmt: str, content_type: str) -> None:
    info = probe(_save(Image.new("RGB", (30, 20), "red"), fmt), max_pixels=LIMIT)
    assert (info.format, info.content_type, info.width, info.height) == (fmt, content_type, 30, 20)
    assert (info.orientation, info.animated) == (1, False)


# ---- decoding ------------------------------------------------------------------------------------


def test_rgb_round_trip_is_exact_through_png() -> None:
    pixels = _noise(33, 47, seed=3)
    decoded = decode_rgb(encode_png(pixels), max_pixels=LIMIT)
    assert decoded.dtype == np.uint8 and decoded.shape == (33, 47, 3)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.flags.writeable and decoded.flags.c_contiguous


def test_exif_orientation_6_is_applied() -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # stored landscape: left red, right blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    data = _save(image, "JPEG", exif=exif.tobytes(), quality=95)

    info = probe(data, max_pixels=LIMIT)
    assert (info.orientation, info.width, info.height) == (6, 20, 40)
    upright = decode_rgb(data, max_pixels=LIMIT)
    assert upright.shape == (40, 20, 3)
    # Orientation 6 means "turn 90 degrees clockwise to view": the stored left edge becomes the top.
    assert _close(upright[5, 10], (255, 0, 0), 10)
    assert _close(upright[35, 10], (0, 0, 255), 10)


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _save(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG", quality=95)
    assert probe(data, max_pixels=LIMIT).mode == "CMYK"
    rgb = decode_rgb(data, max_pixels=LIMIT)
    assert rgb.shape == (16, 16, 3)
    assert _close(rgb[8, 8], (255, 0, 255), 6)  # no cyan, full magenta, no yellow = magenta


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    gray16 = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = _save(Image.fromarray(gray16), "PNG")
    assert probe(data, max_pixels=LIMIT).mode.startswith("I")
    rgb = decode_rgb(data, max_pixels=LIMIT)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    rgb = decode_rgb(_save(Image.fromarray(gray), "PNG"), max_pixels=LIMIT)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 128)  # half red
    rgba[1, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[1, 1] = (0, 0, 255, 255)
    for fmt in ("PNG", "WEBP"):
        options = {"lossless": True} if fmt == "WEBP" else {}
        rgb = decode_rgb(_save(Image.fromarray(rgba, "RGBA"), fmt, **options), max_pixels=LIMIT)
        assert tuple(rgb[0, 0]) == (255, 0, 0)
        assert _close(rgb[0, 1], (255, 127, 127), 1)
        assert tuple(rgb[1, 0]) == (255, 255, 255)
        assert tuple(rgb[1, 1]) == (0, 0, 255)


def test_gray_with_alpha_is_composited_on_white() -> None:
    la = Image.merge("LA", (Image.new("L", (2, 1), 0), Image.frombytes("L", (2, 1), bytes([255, 0]))))
    rgb = decode_rgb(_save(la, "PNG"), max_pixels=LIMIT)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)


def test_palette_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 128, 0] + [10, 20, 30] + [0] * 762)
    palette.putdata([0, 1])
    rgb = decode_rgb(_save(palette, "PNG", transparency=1), max_pixels=LIMIT)
    assert tuple(rgb[0, 0]) == (0, 128, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    opaque = decode_rgb(_save(palette, "PNG"), max_pixels=LIMIT)
    assert tuple(opaque[0, 1]) == (10, 20, 30)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animation_yields_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (12, 10), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    options: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if fmt == "WEBP":
        options["lossless"] = True
    data = _save(frames[0], fmt, **options)
    info = probe(data, max_pixels=LIMIT)
    assert info.animated is True
    rgb = decode_rgb(data, max_pixels=LIMIT)
    assert rgb.shape == (10, 12, 3)
    assert _close(rgb[5, 6], (255, 0, 0), 2)


# ---- encoding ------------------------------------------------------------------------------------


def test_the_encoder_does_not_touch_its_input() -> None:
    pixels = _noise(16, 16, seed=7)
    before = pixels.copy()
    encode_png(pixels)
    np.testing.assert_array_equal(pixels, before)


def test_png_encoding_keeps_alpha_and_gray() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    assert probe(encode_png(rgba), max_pixels=LIMIT).mode == "RGBA"
    assert probe(encode_png(np.zeros((4, 4), dtype=np.uint8)), max_pixels=LIMIT).mode == "L"


@pytest.mark.parametrize(
    "pixels",
    [np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4, 2), dtype=np.uint8), np.zeros((0, 4, 3), dtype=np.uint8)],
)
def test_the_encoder_refuses_bad_arrays(pixels: npt.NDArray[np.uint8]) -> None:
    with pytest.raises(ValueError):
        encode_png(pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_probe_never_decodes_pixels(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _save(Image.fromarray(_noise(40, 30)), fmt)

    def refuse(self: object) -> None:
        raise AssertionError("probe decoded pixel data")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    info = probe(data, max_pixels=LIMIT)
    assert (info.width, info.height) == (30, 40)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_every_orientation_probes_and_decodes_to_the_same_size(fmt: str, orientation: int) -> None:
    image = Image.fromarray(_noise(20, 40))
    exif = image.getexif()
    exif[0x0112] = orientation
    data = _save(image, fmt, exif=exif.tobytes())
    info = probe(data, max_pixels=LIMIT)
    assert info.orientation == orientation
    assert decode_rgb(data, max_pixels=LIMIT).shape == (info.height, info.width, 3)
    assert (info.width, info.height) == ((20, 40) if orientation >= 5 else (40, 20))


def test_orientations_match_pillows_exif_transpose() -> None:
    stored = _noise(6, 10, seed=11)
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        exif = image.getexif()
        exif[0x0112] = orientation
        data = _save(image, "PNG", exif=exif.tobytes())
        expected = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        np.testing.assert_array_equal(decode_rgb(data, max_pixels=LIMIT), expected)
