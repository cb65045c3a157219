"""Reading images: every mode to RGB, resize + centre crop, clear errors for files that are not images."""

import numpy as np
import pytest
from PIL import Image

from dept_vl import InputError
from dept_vl.models.images import load_image, square_array, to_rgb


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "1"])
def test_any_image_mode_becomes_rgb(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8))
    img = base.convert(mode) if mode not in ("I;16", "I") else Image.fromarray(
        np.random.default_rng(0).integers(0, 60000, (10, 12)).astype(np.uint16 if mode == "I;16" else np.int32))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (12, 10)


def test_load_image_errors(tmp_path):
    with pytest.raises(InputError, match="image not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(InputError, match="http://example.com/a.png is a URL; .* download it first"):
        load_image("http://example.com/a.png")
    with pytest.raises(InputError, match="is a directory"):
        load_image(tmp_path)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(bad)
    good = tmp_path / "good.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(good)
    assert load_image(good).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white


def test_square_array_resizes_the_shorter_side_and_crops_the_centre():
    left, middle, right = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    image = Image.new("RGB", (30, 10))
    for x0, colour in ((0, left), (10, middle), (20, right)):
        image.paste(colour, (x0, 0, x0 + 10, 10))
    out = square_array(image, 5)  # 30 x 10 -> 15 x 5, then the middle 5 x 5
    assert out.shape == (5, 5, 3) and out.dtype == np.uint8
    assert tuple(out[2, 2]) == middle
    assert square_array(Image.new("L", (7, 9), 128), 4).shape == (4, 4, 3)  # grayscale becomes RGB
