"""Pictures as files, for every stage: image grids, the PNG writer, and the image-size reader.

Imports only PIL, the standard library and vaecore.runs (numpy when tiling): the gallery, which
is torch-free, reads sizes with it, and training and post-processing pass torch tensors to tile()
without this module importing torch.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image

from vaecore import runs

SCALE = 2  # each 28 x 28 image drawn 56 x 56 (nearest neighbour: pixels stay sharp)
PAD = 2  # white pixels between images, before scaling
GRAYS = 32  # gray levels of the written sheets


def tile(images, nrow: int, pad: int = PAD, scale: int = SCALE) -> Image.Image:
    """(N, 1, H, W) images in [0, 1] (a torch tensor) as one gray grid, nrow per row, pad white
    pixels around each, scaled up: the layout of torchvision's make_grid, without importing
    torchvision (~1 s)."""
    import numpy as np

    # To bytes first, exactly as make_grid's output would be (x * 255, rounded); the white padding
    # (1.0 -> 255) is the same either way.
    x = images.detach().cpu().clamp(0, 1)[:, 0].mul(255).round().byte().numpy()
    n, h, w = x.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    cells = np.full((rows * cols, h + pad, w + pad), 255, np.uint8)
    cells[:n, pad:, pad:] = x
    grid = cells.reshape(rows, cols, h + pad, w + pad).transpose(0, 2, 1, 3).reshape(rows * (h + pad), -1)
    grid = np.pad(grid, ((0, pad), (0, pad)), constant_values=255)  # the bottom and right border
    image = Image.fromarray(grid)  # uint8, 2-D: mode "L"
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


@functools.lru_cache(maxsize=4)
def _levels(n: int) -> list[int]:
    """A lookup table mapping 0..255 to n evenly spaced grays."""
    return [round(round(v * (n - 1) / 255) * 255 / (n - 1)) for v in range(256)]


def write_gray(image: Image.Image, path: Path, levels: int | None = GRAYS) -> None:
    """A gray ("L") image as a PNG with `levels` evenly spaced grays (None: all 256 kept).

    32 levels make the sheets as small as the plotted figures' 32-colour palette and the big
    sheets smaller (ordered grays keep PNG's row filters effective; palette indices do not).
    """
    write_png(image.point(_levels(levels)) if levels else image, path)


def write_png(image: Image.Image, path: Path) -> None:
    """Any PIL image as an optimised PNG, written atomically (temp file, then rename)."""
    buf = io.BytesIO()
    image.save(buf, format="png", optimize=True)
    runs.atomic_write_bytes(path, buf.getvalue())


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """(width, height) of an image file or of its bytes, read from the header only; None when it
    is not a readable image."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.size
    except (OSError, ValueError):
        return None
