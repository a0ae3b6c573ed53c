"""Reading uploaded photos safely: header probe, bounded decode to RGB; and the PNG encoder of the outputs.

Only JPEG, PNG and WebP are opened (Pillow tries no other decoder). The pixel count comes from the
header and is checked before any pixel is decoded, so a decompression bomb (a tiny file declaring an
enormous canvas) is refused without allocating it. Truncated files are refused rather than
half-decoded: Pillow's ``LOAD_TRUNCATED_IMAGES`` must stay False, and is checked. Pure functions
over bytes and arrays; every Pillow error becomes ``ValidationFailed`` or ``PayloadTooLarge``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, UnidentifiedImageError

from server.errors import PayloadTooLarge, ValidationFailed

ImageFormat = Literal["JPEG", "PNG", "WEBP"]

CONTENT_TYPES: dict[ImageFormat, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_OPENERS = ("JPEG", "PNG", "WEBP")
# Phones write multi-picture JPEGs; Pillow names them MPO but they are JPEG files.
_FORMAT_ALIASES: dict[str, ImageFormat] = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
_EXIF_ORIENTATION = 0x0112
# How to turn stored pixels upright for each EXIF orientation (as ``PIL.ImageOps.exif_transpose``).
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Everything Pillow raises for malformed input; none of it may escape as a 500.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, with width and height as displayed (after EXIF orientation)."""

    format: ImageFormat
    content_type: str
    width: int
    height: int
    orientation: int
    """EXIF orientation 1..8 (1 = as stored)."""
    mode: str
    """Pillow mode of the stored pixels (``RGB``, ``CMYK``, ``I;16``, ``P``, ``RGBA``, ...)."""
    animated: bool
    """More than one frame; only the first is used."""


def _open(data: bytes, max_pixels: int) -> tuple[Image.Image, ImageFormat]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if len(data) == 0:
        raise ValidationFailed("the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=_OPENERS)
    except Image.DecompressionBombError as e:
        raise PayloadTooLarge(f"the image declares too many pixels ({e})") from e
    except UnidentifiedImageError as e:
        raise ValidationFailed("the file is not a JPEG, PNG or WebP image") from e
    except _DECODE_ERRORS as e:
        raise ValidationFailed(f"the image header is damaged: {e}") from e
    image_format = _FORMAT_ALIASES.get(image.format or "")
    if image_format is None:
        raise ValidationFailed(f"{image.format} images are not accepted; send JPEG, PNG or WebP")
    width, height = image.size
    if width < 1 or height < 1:
        raise ValidationFailed(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
        )
    return image, image_format


def _orientation(image: Image.Image) -> int:
    """EXIF orientation from what the header holds; never decodes pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixel
        # data. The PNG extension puts eXIf before IDAT, so a late one is ignored (1, as stored).
        return 1
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        # A broken EXIF block does not make the photo unusable; show it as stored.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def probe(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Identify the image and check its size from the header alone; no pixel data is decoded.

    Raises ``ValidationFailed`` (empty, not JPEG/PNG/WebP, damaged header) or ``PayloadTooLarge``
    (more than ``max_pixels`` pixels).
    """
    image, image_format = _open(data, max_pixels)
    with image:
        orientation = _orientation(image)
        width, height = image.size
        if orientation >= 5:  # 5..8 turn the picture by 90 degrees
            width, height = height, width
        return ImageInfo(
            format=image_format,
            content_type=CONTENT_TYPES[image_format],
            width=width,
            height=height,
            orientation=orientation,
            mode=image.mode,
            animated=bool(getattr(image, "is_animated", False)),
        )


def _to_uint8(values: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """16-bit (or 32-bit integer) samples scaled, with rounding, to 0..255."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _composite_on_white(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _has_alpha(image: Image.Image) -> bool:
    mode = image.mode
    return mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "RGB", "L") and "transparency" in image.info)


def _rgba_pixels(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.array(image.convert("RGBA"), dtype=np.uint8)


def _rgb_pixels(image: Image.Image) -> npt.NDArray[np.uint8]:
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = _to_uint8(np.array(image))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("L", "1"):
        gray = np.array(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if _has_alpha(image):
        return _composite_on_white(_rgba_pixels(image))
    # CMYK, YCbCr, opaque palettes, ...: Pillow's conversion (Adobe's inverted CMYK is undone by the
    # JPEG decoder already).
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC through to IEND: the decoder stops once the pixels are complete, so a
    file cut after its last pixel row, or with corrupted chunks, would otherwise pass. Cheap: no
    decompression, only chunk checksums."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            image.verify()
    except _DECODE_ERRORS as e:
        raise ValidationFailed(f"the PNG file is truncated or corrupt: {e}") from e
    # verify() does not read IEND's own checksum; a file must still end with the whole chunk.
    if _PNG_IEND not in data:
        raise ValidationFailed("the PNG file is truncated: it does not end with an IEND chunk")


def _decode(data: bytes, max_pixels: int, keep_alpha: bool) -> npt.NDArray[np.uint8]:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must be False: it hides truncated uploads")
    image, image_format = _open(data, max_pixels)
    if image_format == "PNG":
        _verify_png(data)
    with image:
        # Read before load(): the same header-only answer probe() gives, so both agree on the size.
        orientation = _orientation(image)
        try:
            image.seek(0)
            image.load()
            transpose = _TRANSPOSE.get(orientation)
            upright = image if transpose is None else image.transpose(transpose)
            pixels = _rgba_pixels(upright) if keep_alpha and _has_alpha(upright) else _rgb_pixels(upright)
        except Image.DecompressionBombError as e:
            raise PayloadTooLarge(f"the image declares too many pixels ({e})") from e
        except _DECODE_ERRORS as e:
            raise ValidationFailed(f"the image cannot be decoded (truncated or corrupt): {e}") from e
    return np.ascontiguousarray(pixels)


def decode_rgb(data: bytes, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode the photo to an ``HxWx3`` uint8 RGB array as a person would see it.

    EXIF orientation is applied; CMYK, 16-bit, grayscale and palette images are converted; alpha is
    composited on white; of an animation only the first frame is decoded. The header is checked
    first (see :func:`probe`), and a truncated or corrupt file raises ``ValidationFailed``.
    """
    return _decode(data, max_pixels, keep_alpha=False)


def decode_display(data: bytes, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """As :func:`decode_rgb`, but an image with transparency stays ``HxWx4`` RGBA (straight alpha):
    what a client shows over its own backdrop. Used to read delivered outputs back."""
    return _decode(data, max_pixels, keep_alpha=True)


def verify_decodes(data: bytes, *, max_pixels: int) -> None:
    """Prove the whole file decodes, as :func:`decode_rgb` would, at a fraction of its memory.

    A JPEG is decoded in Pillow's draft mode at 1/8 scale: libjpeg still reads every entropy-coded
    segment to the end of the file (so a truncated or corrupt one fails the same way), but holds
    1/64 of the pixels. PNG and WebP have no such mode and are decoded in full.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must be False: it hides truncated uploads")
    image, image_format = _open(data, max_pixels)
    if image_format != "JPEG":
        image.close()
        decode_rgb(data, max_pixels=max_pixels)
        return
    with image:
        try:
            image.draft("RGB", (max(image.width // 8, 1), max(image.height // 8, 1)))
            image.load()
        except Image.DecompressionBombError as e:
            raise PayloadTooLarge(f"the image declares too many pixels ({e})") from e
        except _DECODE_ERRORS as e:
            raise ValidationFailed(f"the image cannot be decoded (truncated or corrupt): {e}") from e


def _check_pixels(pixels: npt.NDArray[np.uint8], channels: tuple[int, ...]) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise ValueError("pixels must be a uint8 numpy array")
    gray = pixels.ndim == 2 and 1 in channels
    if not gray and (pixels.ndim != 3 or pixels.shape[2] not in channels):
        raise ValueError(f"pixels must be HxW or HxWxC with C in {channels}, got shape {pixels.shape}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"pixels must not be empty, got shape {pixels.shape}")


def _as_image(pixels: npt.NDArray[np.uint8]) -> Image.Image:
    frame = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    return Image.fromarray(np.ascontiguousarray(frame))


def encode_png(pixels: npt.NDArray[np.uint8], *, compress_level: int = 6) -> bytes:
    """``HxW`` gray, ``HxWx3`` RGB or ``HxWx4`` RGBA uint8 to PNG bytes (lossless)."""
    _check_pixels(pixels, (1, 3, 4))
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be within 0..9, got {compress_level}")
    out = io.BytesIO()
    _as_image(pixels).save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()
