"""Reading images: any file or bytes Pillow opens, in any mode, as RGB and upright (EXIF orientation applied, as
every viewer shows it); resizing and centre-cropping to a square.

``open_image`` is the one opening path, for files (``load_image``: predict, training, the feature cache) and request
bodies (the server) alike, with one size policy: an image over Pillow's decompression-bomb warning size
(``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 megapixels by default) is refused, not decoded. Errors a user can cause (a
missing, empty, truncated or non-image file, a directory, too many pixels) are an InputError naming the image.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError


def open_image(source: bytes | str | Path, name: str) -> Image.Image:
    """RGB, EXIF orientation applied, from ``source`` (bytes, or a file path); an InputError starting with ``name``
    for nothing, a non-image, a truncated image, or more pixels than allowed."""
    if isinstance(source, bytes) and not source:
        raise InputError(f"{name} is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            raise InputError(f"{name} has more pixels than allowed (a decompression bomb guard; raise "
                             f"PIL.Image.MAX_IMAGE_PIXELS if you trust it): {err}") from None
        except UnidentifiedImageError:
            raise InputError(f"{name} is not an image (not a format Pillow reads)") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{name} is not an image that can be read: {err}") from None


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB (``open_image``), with a clear error for a missing file, a directory, a symlink
    loop, or a URL (dept-vl never touches the network)."""
    if str(path).startswith(("http://", "https://")):
        raise InputError(f"{path} is a URL; dept-vl reads local image files only: download it first "
                         "(e.g. curl -O URL) and pass the file")
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as err:  # e.g. a symlink loop
        raise InputError(f"cannot read image {path}: {err.strerror or err}") from None
    if not exists and path.is_symlink():
        raise InputError(f"cannot read image {path}: {_broken_link(path)}")
    if not exists:
        raise InputError(f"image not found: {path}")
    if is_dir:
        raise InputError(f"image path is a directory: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"cannot read image {path}: the file is empty")
    try:
        return open_image(str(path), f"image {path}")
    except InputError as err:
        raise InputError(f"cannot read image {path}: {str(err).removeprefix(f'image {path} ')}") from None


def _broken_link(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as err:
        return "a symlink loop" if err.errno == errno.ELOOP else "a symlink to nothing"
    return "a symlink that cannot be followed"


def as_image(image) -> Image.Image:
    """A PIL image as it is; a path read (``load_image``); image bytes (inline in a data file) decoded."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, bytes):
        return open_image(image, "an inline image")
    return load_image(image)


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
