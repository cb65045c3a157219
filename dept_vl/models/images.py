"""Reading images: any file Pillow opens, in any mode, as RGB; resizing and centre-cropping to a square.

Errors a user can cause (a missing, empty, truncated or non-image file, a directory, a decompression bomb) are an
InputError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, with a clear error for a missing, unreadable or corrupt file, or a URL (dept-vl
    never touches the network)."""
    if str(path).startswith(("http://", "https://")):
        raise InputError(f"{path} is a URL; dept-vl reads local image files only: download it first "
                         "(e.g. curl -O URL) and pass the file")
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"image path is a directory: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"cannot read image {path}: {err}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (L, LA, P, RGBA, I;16, CMYK, ...) to RGB; alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        image = Image.fromarray((arr / top * 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square_array(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: RGB, shorter side resized to ``size`` (bicubic), centre crop."""
    image = to_rgb(image)
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
