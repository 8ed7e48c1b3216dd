"""Labelled sheets of decoded images drawn with PIL: grids with a title, row and column labels.

Image grids need no axes, so they skip matplotlib (figure, axes, savefig, re-read: ~0.3 s each);
the text uses matplotlib's bundled DejaVu Sans so the sheets read like the plotted figures.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vaecore.images import PAD, SCALE, tile

MARGIN = 8  # white border around the sheet
TITLE, LABEL, SMALL = 15, 12, 11  # font sizes in pixels


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size)


def text_width(text: str, size: int) -> int:
    return int(font(size).getlength(text)) if text else 0


def fitting(labels: list[str], width: int) -> int:
    """The largest font size up to LABEL at which every label fits in width pixels."""
    size = LABEL
    while size > 8 and max((text_width(s, size) for s in labels), default=0) > width:
        size -= 1
    return size


def sheet(
    images: torch.Tensor,
    cols: int,
    title: str = "",
    row_labels: list[str] | None = None,
    top_labels: list[str] | None = None,
    bottom_labels: list[str] | None = None,
    xlabel: str = "",
    pad: int = PAD,
    title_size: int = TITLE,
    margin: int = MARGIN,
) -> Image.Image:
    """A grid of images with optional title, row labels (left), column labels (above or below)
    and an x-axis label under the bottom labels."""
    grid = tile(images, cols, pad)
    cell = (images.shape[-1] + pad) * SCALE  # one image plus its padding, scaled
    top_size = fitting(top_labels or [], cell - 4)
    left, top, bottom = _margins(title, title_size, row_labels, top_labels, top_size, bottom_labels, xlabel)
    width = max(left + grid.width, text_width(title, title_size)) + 2 * margin
    out = Image.new("L", (width, top + grid.height + bottom + 2 * margin), 255)
    x0, y0 = margin + left, margin + top
    out.paste(grid, (x0, y0))
    draw = ImageDraw.Draw(out)
    centre = lambda i: x0 + pad * SCALE // 2 + cell * i + cell // 2
    if title:
        draw.text((width // 2, margin), title, fill=0, font=font(title_size), anchor="mt")
    for r, label in enumerate(row_labels or []):
        y = y0 + pad * SCALE // 2 + cell * r + cell // 2
        draw.text((x0 - 6, y), label, fill=0, font=font(LABEL), anchor="rm")
    for i, label in enumerate(top_labels or []):
        draw.text((centre(i), y0 - 4), label, fill=0, font=font(top_size), anchor="mb")
    y = y0 + grid.height + 3
    for i, label in enumerate(bottom_labels or []):
        draw.text((centre(i), y), label, fill=0, font=font(SMALL), anchor="mt")
    if xlabel:
        y += SMALL + 6 if bottom_labels else 0
        draw.text((x0 + grid.width // 2, y), xlabel, fill=0, font=font(LABEL), anchor="mt")
    return out


def _margins(
    title: str,
    title_size: int,
    row_labels: list[str] | None,
    top_labels: list[str] | None,
    top_size: int,
    bottom_labels: list[str] | None,
    xlabel: str,
) -> tuple[int, int, int]:
    """Pixels the title and the labels take left of, above and below the grid."""
    left = max((text_width(s, LABEL) for s in row_labels or []), default=0)
    top = (title_size + title_size // 2 if title else 0) + (top_size + 6 if top_labels else 0)
    bottom = (SMALL + 6 if bottom_labels else 0) + (LABEL + 6 if xlabel else 0)
    return left + 8 if left else 0, top, bottom


def stack(panels: list[Image.Image], cols: int, title: str, gap: int = 10) -> Image.Image:
    """Panels (equal sizes) packed cols per row under a title."""
    w, h = panels[0].size
    rows = (len(panels) + cols - 1) // cols
    head = TITLE + 12
    out = Image.new("L", (cols * w + (cols - 1) * gap + 2 * MARGIN, head + rows * h + 2 * MARGIN), 255)
    for i, panel in enumerate(panels):
        out.paste(panel, (MARGIN + (i % cols) * (w + gap), MARGIN + head + (i // cols) * h))
    ImageDraw.Draw(out).text((out.width // 2, MARGIN), title, fill=0, font=font(TITLE), anchor="mt")
    return out
