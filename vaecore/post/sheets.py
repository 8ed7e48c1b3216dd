"""Labelled sheets of decoded images drawn with PIL: grids with a title, row and column labels.

Image grids need no axes, so they skip matplotlib (figure, axes, savefig, re-read: ~0.3 s each);
the text uses matplotlib's bundled DejaVu Sans so the sheets read like the plotted figures.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

SCALE = 2  # each 28 x 28 image drawn 56 x 56 (nearest neighbour: pixels stay sharp)
PAD = 2  # white pixels between images, before scaling
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


LEVELS = [round(round(v * 31 / 255) * 255 / 31) for v in range(256)]  # 32 evenly spaced grays


def save(image: Image.Image, path: Path) -> None:
    """Gray PNG with 32 levels: as small as the plotted figures' 32-colour palette and smaller for
    the big sheets (ordered grays keep PNG's row filters effective; palette indices do not)."""
    from vaecore import runs

    buf = io.BytesIO()
    image.point(LEVELS).save(buf, format="png", optimize=True)
    runs.atomic_write_bytes(path, buf.getvalue())


def tile(images: torch.Tensor, nrow: int, pad: int = PAD, scale: int = SCALE) -> Image.Image:
    """(N, 1, H, W) images in [0, 1] as one gray grid, nrow per row, pad white pixels around each,
    scaled up: the layout of torchvision's make_grid, without importing torchvision (~1 s)."""
    x = images.detach().cpu().clamp(0, 1)[:, 0]
    n, h, w = x.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    cells = torch.ones(rows * cols, h + pad, w + pad)
    cells[:n, pad:, pad:] = x
    grid = cells.view(rows, cols, h + pad, w + pad).permute(0, 2, 1, 3).reshape(rows * (h + pad), -1)
    grid = torch.nn.functional.pad(grid, (0, pad, 0, pad), value=1.0)  # the bottom and right border
    image = Image.fromarray(grid.mul(255).round().byte().numpy(), mode="L")
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


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
    left = max((text_width(s, LABEL) for s in row_labels or []), default=0)
    left = left + 8 if left else 0
    top_size = fitting(top_labels or [], cell - 4)
    top = (title_size + title_size // 2 if title else 0) + (top_size + 6 if top_labels else 0)
    bottom = (SMALL + 6 if bottom_labels else 0) + (LABEL + 6 if xlabel else 0)
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
