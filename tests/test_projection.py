import pytest
import torch

from dept_vl import InputError, VisualProjection


def test_shapes_and_layernorm():
    proj = VisualProjection(12, 8, max_images=2)
    out = proj(torch.randn(3, 2, 5, 12) * 100)
    assert out.shape == (3, 10, 8)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 10), atol=1e-5, rtol=0)  # LN, zero index emb


def test_image_index_embedding_separates_images():
    proj = VisualProjection(4, 6, max_images=2)
    torch.nn.init.normal_(proj.image_index.weight)
    same = torch.randn(1, 1, 3, 4).expand(1, 2, 3, 4)
    out = proj(same)
    torch.testing.assert_close(out[:, 3:] - out[:, :3], (proj.image_index.weight[1] - proj.image_index.weight[0]).expand(1, 3, 6))


def test_too_many_images():
    with pytest.raises(InputError, match="at most 1"):
        VisualProjection(4, 6)(torch.randn(1, 2, 3, 4))
