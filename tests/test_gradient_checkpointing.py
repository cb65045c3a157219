"""--gradient-checkpointing: the frozen language model's layers recompute their activations in the backward pass;
the loss and the gradients of the input method are the same as without, in a frozen (eval-mode) model."""

import copy

import pytest
import torch
from PIL import Image

from dept_vl import ModelConfig, VisionLanguageModel
from dept_vl.models import NativeVisionLanguageModel
from dept_vl.models.checkpointing import enable_gradient_checkpointing

from conftest import tiny_model_config


def loss_and_grads(model, batch):
    for p in model.parameters():
        p.grad = None
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def attention_calls(model, batch) -> int:
    """How often the language model's attention modules run in one step (forward, and recomputes)."""
    calls = []
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for name, m in
               model.frozen_language_model.named_modules() if name.endswith(("self_attn", "SelfAttention"))]
    model(**batch).loss.backward()
    for handle in handles:
        handle.remove()
    return len(calls)


def check_same_with_and_without(model, batch):
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)  # B starts at zero: give every tensor a gradient path
    plain = copy.deepcopy(model)
    base_calls = attention_calls(plain, batch)
    assert enable_gradient_checkpointing(model) >= 2
    model.train()  # as training runs it: the frozen backbone stays in eval mode
    assert attention_calls(model, batch) == 2 * base_calls  # every layer ran again in the backward pass
    loss, grads = loss_and_grads(model, batch)
    plain_loss, plain_grads = loss_and_grads(plain.train(), batch)
    assert abs(loss - plain_loss) < 1e-6 and set(grads) == set(plain_grads) and grads
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-6)


def test_native_vlm_same_loss_and_gradients(tiny_llava_dir):
    torch.manual_seed(0)
    model = NativeVisionLanguageModel(ModelConfig.from_dict({
        "vlm": str(tiny_llava_dir), "dept": {"prompt_length": 4, "r": 2, "max_length": 48},
        "text": {"max_target_length": 4}}))
    batch = model.prepare(["what color is the shape?", "is there a circle?"],
                          [Image.new("RGB", (40, 40), "red"), Image.new("RGB", (30, 50), "blue")],
                          targets=["red", "no"])
    check_same_with_and_without(model, batch)
    model.eval()
    with torch.no_grad():  # generation: no recompute, the KV cache works
        assert model.predict(["what color is the shape?"], [Image.new("RGB", (40, 40), "red")])


@pytest.mark.parametrize("backbone", ["tiny_llama_dir", "tiny_t5_dir"])
def test_assembled_text_backbone_same_loss_and_gradients(tiny_clip_dir, backbone, request):
    torch.manual_seed(0)
    model = VisionLanguageModel(tiny_model_config(tiny_clip_dir, request.getfixturevalue(backbone)))
    images = [Image.new("RGB", (40, 40), "red"), Image.new("RGB", (30, 50), "blue")]
    batch = model.prepare(["what shape?", "what color is it?"], images=images, targets=["circle", "red"])
    check_same_with_and_without(model, batch)
