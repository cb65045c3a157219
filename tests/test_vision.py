import numpy as np
import pytest
import torch
from PIL import Image

from dept_vl import ConfigError, build_vision_encoder, register_vision_encoder
from dept_vl.models.vision import VisionEncoder


@pytest.fixture(scope="module")
def lite0():
    return build_vision_encoder("efficientnet-lite0", image_size=224)


def test_efficientnet_lite0_real_weights_classify_photos(lite0):
    from skimage import data

    pixels = lite0.preprocess([Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())])
    top1 = lite0.classify(pixels).argmax(-1).tolist()
    assert top1[0] in (281, 282, 285)  # tabby / tiger cat / Egyptian cat
    assert top1[1] == 967  # espresso


def test_efficientnet_lite0_tokens_and_pooling(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    assert lite0.out_dim == 1280 and lite0.num_tokens() == 49
    small = build_vision_encoder("efficientnet-lite0", image_size=96)
    x = small.preprocess([Image.new("RGB", (64, 64), "red")] * 2)
    assert x.shape == (2, 3, 96, 96)
    assert small(x).shape == (2, 9, 1280)
    pixels = lite0.preprocess([Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))])
    full = lite0(pixels)
    assert build_vision_encoder("efficientnet-lite0", pool_tokens=4)(pixels).shape == (1, 4, 1280)
    one = build_vision_encoder("efficientnet-lite0", pool_tokens=1)(pixels)
    torch.testing.assert_close(one[:, 0], full.mean(1), atol=1e-5, rtol=1e-5)  # 7x7 grid -> its mean


def test_encoder_stays_in_eval_mode(lite0):
    lite0.train()
    assert not lite0.training and not lite0.net.training


def test_timm_models_by_name():
    vit = build_vision_encoder("timm:test_vit", pretrained=False)
    assert vit.num_prefix_tokens >= 1
    x = torch.randn(2, 3, vit.image_size, vit.image_size)
    tokens = vit(x)
    assert tokens.shape[0] == 2 and tokens.shape[2] == vit.out_dim
    cnn = build_vision_encoder("timm:test_resnet", pretrained=False, pool_tokens=1)
    assert cnn(torch.randn(1, 3, cnn.image_size, cnn.image_size)).shape == (1, 1, cnn.out_dim)


def test_hf_clip_and_siglip_towers_by_path(tiny_clip_dir, tiny_siglip_dir):
    clip = build_vision_encoder(tiny_clip_dir)
    assert clip.out_dim == 32 and clip.num_prefix_tokens == 1 and clip.num_tokens() == 1 + 16
    assert torch.allclose(clip.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    pooled = build_vision_encoder(f"hf:{tiny_clip_dir}", pool_tokens=4)
    assert pooled.num_tokens() == 1 + 4
    siglip = build_vision_encoder(tiny_siglip_dir)
    assert siglip.num_prefix_tokens == 0 and siglip.num_tokens() == 16
    out = siglip(siglip.preprocess([Image.new("RGB", (50, 40), "green")]))
    assert out.shape == (1, 16, 32) and torch.isfinite(out).all()


def test_registry_decorator():
    @register_vision_encoder("test-constant")
    def build(image_size=8, **_):
        class Constant(VisionEncoder):
            def forward_tokens(self, pixels):
                return torch.ones(pixels.shape[0], 3, 5)

        return Constant(out_dim=5, image_size=image_size)

    enc = build_vision_encoder("test-constant")
    assert enc(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 5)


def test_unknown_encoder_and_bad_pooling():
    with pytest.raises(ConfigError, match="unknown vision encoder 'resnet9000'"):
        build_vision_encoder("resnet9000")
    with pytest.raises(ConfigError, match="square number"):
        build_vision_encoder("efficientnet-lite0", pool_tokens=5, pretrained=False)
