"""A before/after contact sheet: one row per photo, the upload on the left and the result on the right.

Transparent results (a removed background) are shown over a checkerboard, as image editors do.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

CELL = (480, 360)
PAD = 12
CAPTION_H = 22
HEADER_H = 56
BACKGROUND = (250, 250, 248)
INK = (40, 40, 40)
WARN = (170, 40, 30)


@dataclass(frozen=True)
class Row:
    caption: str
    before: bytes
    after: bytes


def _checkerboard(size: tuple[int, int], square: int = 12) -> Image.Image:
    board = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], square):
        for x in range((y // square) % 2 * square, size[0], square * 2):
            draw.rectangle((x, y, x + square - 1, y + square - 1), fill=(214, 214, 214))
    return board


def _cell(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA")
    image.thumbnail(CELL, Image.Resampling.LANCZOS)
    flat = _checkerboard(image.size)
    flat.paste(image, (0, 0), image)
    return flat


def contact_sheet(title: str, rows: Sequence[Row], warning: str | None = None) -> bytes:
    """The sheet as PNG bytes."""
    font = ImageFont.load_default(size=16)
    title_font = ImageFont.load_default(size=22)
    width = PAD * 3 + CELL[0] * 2
    row_h = CAPTION_H + CELL[1] + PAD
    sheet = Image.new("RGB", (width, HEADER_H + PAD + row_h * max(len(rows), 1)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 8), title, fill=INK, font=title_font)
    if warning:
        draw.text((PAD, 34), warning, fill=WARN, font=font)
    y = HEADER_H + PAD
    for row in rows:
        draw.text((PAD, y), f"{row.caption}: before", fill=INK, font=font)
        draw.text((PAD * 2 + CELL[0], y), "after", fill=INK, font=font)
        for column, data in enumerate((row.before, row.after)):
            cell = _cell(data)
            x = PAD + column * (CELL[0] + PAD) + (CELL[0] - cell.width) // 2
            sheet.paste(cell, (x, y + CAPTION_H + (CELL[1] - cell.height) // 2))
        y += row_h
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
