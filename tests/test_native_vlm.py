"""DePT on native Hugging Face VLMs (every family of tests/tiny_vlms.py): the method acts on the language model's
input after the image merge, and the model's own placeholders, positions and token types stay right."""

import pytest
import torch
from torch import nn

from dept_vl import ConfigError, DePTConfig, InputError, attach_dept, param_groups
from dept_vl.methods.native import NativeVLMWrapper, StackedMethods, insert_slots, remove_slots

from tiny_vlms import FAMILIES

PROMPT = [11, 12, 13]  # T: the tokens whose embeddings become P
NAMES = list(FAMILIES)


def attach(family, r=2, method="dept", seed=1):
    model = family.build()
    wrapped = attach_dept(model, DePTConfig(prompt_length=len(PROMPT), r=r, max_length=80), method=method)
    torch.manual_seed(seed)
    with torch.no_grad():
        wrapped.dept.prompt_embeddings.copy_(model.get_input_embeddings()(torch.tensor(PROMPT)))
    return wrapped


def with_prompt_tokens(family, inputs):
    """The bare model's inputs with T as ordinary prefix text: before the image placeholders, token types of text."""
    out = dict(inputs)
    out["input_ids"] = torch.cat([torch.tensor([PROMPT]), inputs["input_ids"]], 1)
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in inputs:
            out[key] = torch.cat([torch.zeros(1, len(PROMPT), dtype=inputs[key].dtype), inputs[key]], 1)
    return out


def decoder_inputs(family):
    return {"decoder_input_ids": torch.tensor([[2, 20, 21, 22]])} if family.encoder_decoder else {}


@pytest.mark.parametrize("name", NAMES)
def test_b_zero_and_p_from_tokens_equals_those_tokens_as_text(name):
    """The correctness definition: with B = 0 and P the embeddings of T, the wrapped model's logits equal the bare
    model's on the input with T prepended as text, at the input's positions."""
    family = FAMILIES[name]
    wrapped, bare = attach(family), family.build()
    inputs = family.inputs([[20, 21, 22, 23, 24]])
    with torch.no_grad():
        got = wrapped(**inputs, **decoder_inputs(family)).logits
        want = bare(**with_prompt_tokens(family, inputs), **decoder_inputs(family)).logits
    if not family.encoder_decoder:  # decoder-only logits cover the prompt's positions too
        got, want = got[:, len(PROMPT):], want[:, len(PROMPT):]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_and_b_change_the_logits_and_only_p_a_b_learn(name):
    family = FAMILIES[name]
    wrapped = attach(family)
    inputs = family.inputs([[20, 21, 22, 23, 24]])
    labels = {"labels": torch.tensor([[20, 21, 2]])} if family.encoder_decoder else {"labels": inputs["input_ids"]}
    before = wrapped(**inputs, **labels).logits.detach()
    nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.5)
    out = wrapped(**inputs, **labels)
    assert (out.logits - before).abs().max() > 1e-3
    out.loss.backward()
    learned = {n for n, p in wrapped.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert learned == {"dept.prompt_embeddings", "dept.lora_embedding_A", "dept.lora_embedding_B"}
    assert all(not p.requires_grad for p in wrapped.model.parameters())


def no_end(model):
    """Generation that never stops early and suppresses nothing: each new token is the plain argmax."""
    for config in {model.generation_config, getattr(getattr(model, "language_model", None), "generation_config", None)}:
        if config is not None:
            config.eos_token_id = config.forced_eos_token_id = None


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generate_equals_the_teacher_forced_argmax(name):
    family = FAMILIES[name]
    wrapped = attach(family)
    nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.5)
    no_end(wrapped.model)
    inputs = family.inputs([[20, 21, 22, 23, 24]])
    generated = wrapped.generate(**inputs, max_new_tokens=4, do_sample=False)
    if family.encoder_decoder:  # the decoder's tokens: teacher-force them through the decoder
        with torch.no_grad():
            logits = wrapped(**inputs, decoder_input_ids=generated[:, :-1]).logits
        assert torch.equal(logits.argmax(-1), generated[:, 1:])
        return
    n = inputs["input_ids"].shape[1]
    assert torch.equal(generated[:, :n], inputs["input_ids"])  # the prompt's slots are gone from the output
    forced = dict(inputs, input_ids=generated[:, :-1], attention_mask=torch.ones_like(generated[:, :-1]))
    for key in ("token_type_ids", "mm_token_type_ids"):
        if key in inputs:  # the generated tokens: suffix (PaliGemma) / text (Qwen)
            fill = 1 if key == "token_type_ids" else 0
            forced[key] = torch.cat([inputs[key], torch.full((1, 3), fill, dtype=inputs[key].dtype)], 1)
    with torch.no_grad():
        logits = wrapped(**forced).logits
    predicted = logits[:, len(PROMPT) + n - 1:].argmax(-1)  # the prompt's l positions come first
    assert torch.equal(predicted, generated[:, n:])


@pytest.mark.parametrize("name", NAMES)
def test_a_padded_batch_equals_one_at_a_time(name):
    """Left-padded for decoder-only language models (each token still meets its real row of A), right-padded for
    encoder-decoders, as their processors pad."""
    family = FAMILIES[name]
    wrapped = attach(family)
    nn.init.normal_(wrapped.dept.lora_embedding_B, std=0.5)
    rows = [[20, 21, 22, 23, 24, 25], [30, 31, 32]]
    batch = family.inputs(rows, seed=0)
    together = wrapped.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    for i, row in enumerate(rows):
        alone = family.inputs([row], seed=0)
        for key, value in batch.items():  # the same image for the row as in the batch
            if key.startswith("pixel") or key in ("image_grid_thw", "image_sizes"):
                alone[key] = value[i * len(value) // 2:(i + 1) * len(value) // 2]
        one = wrapped.generate(**alone, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        assert torch.equal(together[i, -3:], one[0, -3:]), (i, together, one)


@pytest.mark.parametrize("name", [n for n in NAMES if not FAMILIES[n].encoder_decoder])
def test_stacked_methods_of_two_prompt_lengths_answer_each_row_as_its_own_method(name):
    """A mixed batch of two runs (l = 3 and l = 1) in one pass: each row generates what its own method gives the
    whole batch, the shorter prompt's unused slot counting as left padding (positions, M-RoPE, token types)."""
    family = FAMILIES[name]
    wrapped = attach(family)
    short = attach_dept(family.build(), DePTConfig(prompt_length=1, r=2, max_length=80)).dept
    for method in (wrapped.dept, short):
        nn.init.normal_(method.lora_embedding_B, std=0.5)
        nn.init.normal_(method.prompt_embeddings, std=1.0)
    no_end(wrapped.model)
    batch = family.inputs([[20, 21, 22, 23, 24, 25], [30, 31, 32]], seed=0)
    settings = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    alone = [wrapped.generate(**batch, **settings)]
    with wrapped.using(short):
        alone.append(wrapped.generate(**batch, **settings))
    with wrapped.using(StackedMethods([wrapped.dept, short], torch.tensor([1, 0]))):
        mixed = wrapped.generate(**batch, **settings)
    assert torch.equal(mixed[0, -3:], alone[1][0, -3:]) and torch.equal(mixed[1, -3:], alone[0][1, -3:])
    assert mixed.shape == alone[0].shape  # the slots are gone from the output, the unused one too


@pytest.mark.parametrize("name", ["llava", "qwen2_vl", "paligemma", "florence2"])
def test_a_training_loss_falls_on_a_fixed_batch(name):
    family = FAMILIES[name]
    wrapped = attach(family, method="dept")
    inputs = family.inputs([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])
    labels = torch.tensor([[20, 21, 2], [30, 31, 2]]) if family.encoder_decoder else \
        inputs["input_ids"].masked_fill(inputs["input_ids"] >= 280, -100)
    optimizer = torch.optim.AdamW(param_groups(wrapped, 0.3, 1e-2))
    losses = []
    for _ in range(8):
        loss = wrapped(**inputs, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("method", ["pt", "adept"])
def test_other_input_methods_on_a_native_vlm(method):
    family = FAMILIES["llava"]
    model = family.build()
    wrapped = attach_dept(model, DePTConfig(prompt_length=3, r=2, max_length=80), method=method)
    assert isinstance(wrapped, NativeVLMWrapper) and wrapped.method_name == method
    inputs = family.inputs([[20, 21, 22]])
    out = wrapped(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert wrapped.dept.prompt_embeddings.grad is not None
    assert wrapped.generate(**inputs, max_new_tokens=2, do_sample=False).shape == (1, inputs["input_ids"].shape[1] + 2)


def test_slots_go_before_each_rows_first_real_token():
    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 0]])  # left-padded, right-padded
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    assert insert_slots(ids, mask, 2, 99).tolist() == [[0, 0, 99, 99, 5, 6], [99, 99, 7, 8, 9, 0]]
    assert insert_slots(mask, mask, 2, 1).tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    extended = insert_slots(mask, mask, 2, 1)
    generated = torch.cat([insert_slots(ids, mask, 2, 99), torch.tensor([[4], [3]])], 1)
    assert remove_slots(generated, extended, 2).tolist() == [[0, 0, 5, 6, 4], [7, 8, 9, 0, 3]]


def test_what_cannot_be_handled_is_refused_in_one_line():
    family = FAMILIES["llava"]
    wrapped = attach(family)
    inputs = family.inputs([[20, 21]])
    with pytest.raises(InputError, match="leave position_ids and inputs_embeds out"):
        wrapped(**inputs, position_ids=torch.arange(inputs["input_ids"].shape[1])[None])
    with pytest.warns(UserWarning, match="exceeds DePT max_length 80: tokens past position 80 get no update"):
        wrapped(**family.inputs([list(range(20, 90))]))
    import transformers as T

    other = T.Gemma3ForConditionalGeneration(T.Gemma3Config(
        vision_config=T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8),
        text_config=T.Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=16), mm_tokens_per_image=4))
    with pytest.raises(ConfigError, match="vision-language model dept-vl does not know how to adapt; supported: LLaVA"):
        attach_dept(other, DePTConfig(prompt_length=2, r=1, max_length=32))
    assert all(p.requires_grad for p in other.parameters())  # refused before anything changed
