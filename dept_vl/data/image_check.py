"""Whether a data set's image can be read, checked when the data is read (before a run writes anything), so that a
bad image is named by its data file and line, and ``--skip-bad-lines`` can skip its record.

The check follows the policy of ``models.images.open_image`` (which decodes the image later): an empty file, a file
that is not an image, a truncated one, or one over Pillow's decompression-bomb warning size
(``PIL.Image.MAX_IMAGE_PIXELS``) is refused. It costs a header read for a whole JPEG or PNG (its last bytes are its
end marker: a file cut short, the common corruption, lacks it); only an image without its marker, or of another
format, is decoded (a JPEG at 1/8 scale) to decide. Each file once per process (keyed by its path, size and
modification time).
"""

from __future__ import annotations

import functools
import io
import os
import warnings

from PIL import Image, UnidentifiedImageError


def image_problem(source: str | bytes) -> str | None:
    """What is wrong with the image file (a path) or image bytes ``source``, in a few words; None when it reads."""
    if isinstance(source, bytes):
        return _problem(source) if source else "is empty"
    try:
        stat = os.stat(source)
    except OSError as err:
        return f"cannot be opened ({err.strerror or err})"
    return "is empty" if stat.st_size == 0 else _file_problem(source, stat.st_size, stat.st_mtime_ns,
                                                              Image.MAX_IMAGE_PIXELS)


@functools.lru_cache(maxsize=65536)
def _file_problem(path: str, size: int, mtime_ns: int, max_pixels) -> str | None:
    return _problem(path)


END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}  # the last bytes of a whole file


def _problem(source: str | bytes) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                marker = END_MARKERS.get(image.format)
                if marker is None or not _tail(source).rstrip(b"\0\r\n ").endswith(marker):
                    image.draft("RGB", (64, 64))  # JPEG: decoded at a fraction of its size; a no-op for others
                    image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            return f"has more pixels than allowed (a decompression bomb guard: {err})"
        except UnidentifiedImageError:
            return "is not an image (not a format Pillow reads)"
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            return f"is truncated or corrupt ({err})"
    return None


def _tail(source: str | bytes, size: int = 64) -> bytes:
    if isinstance(source, bytes):
        return source[-size:]
    with open(source, "rb") as fh:
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - size))
        return fh.read()
