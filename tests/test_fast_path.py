"""The fast path (dept_vl/fast): one compiled graph per length bucket, no graph breaks, compiled == eager, greedy
generation through the compiled static cache == eager == the teacher-forced argmax, padding never meets A."""

import random

import pytest
import torch

from dept_vl import ConfigError, ModelConfig, VisionLanguageModel, param_groups
from dept_vl.fast import FastPath, for_inference, graph_breaks_in, resolve_device, use_compile

from conftest import WORDS


def build(backbone: str) -> VisionLanguageModel:
    """DePT (l=4, r=4) on ``backbone`` with 3 precomputed visual tokens of width 16."""
    torch.manual_seed(0)
    model = VisionLanguageModel(ModelConfig.from_dict({
        "vision": {"encoder": "features", "feature_dim": 16, "num_tokens": 3},
        "text": {"backbone": backbone, "max_length": 16, "max_target_length": 8},
        "dept": {"prompt_length": 4, "r": 4, "max_length": 64}}))
    torch.nn.init.normal_(model.dept.lora_embedding_B)  # make A @ B matter
    return model


def random_inputs(rng: random.Random, size: int = 4, answer_words: int = 3, question_words: tuple = (1, 13)
                  ) -> tuple[list[str], list[str], torch.Tensor]:
    """Questions of ``question_words`` (1-13) words, answers of 1 to ``answer_words`` words, and visual features."""
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(*question_words))) for _ in range(size)]
    answers = [" ".join(rng.choices(WORDS, k=rng.randint(1, answer_words))) for _ in range(size)]
    return texts, answers, torch.randn(size, 3, 16, generator=torch.Generator().manual_seed(rng.randint(0, 10**6)))


def random_batch(model, rng: random.Random, size: int = 4, answer_words: int = 3, question_words: tuple = (1, 13)
                 ) -> dict:
    texts, answers, features = random_inputs(rng, size, answer_words, question_words)
    return model.prepare(texts, image_features=features, targets=answers)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_settings():
    assert use_compile(None, "cpu") is False and use_compile(None, "cuda") is True
    assert use_compile(True, "cpu") is True and use_compile(False, "cuda") is False
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    for bad in ({"backend": "tvm"}, {"mode": "fastest"}, {"bucket_multiple": 0}):
        with pytest.raises(ConfigError):
            FastPath(**bad)


def test_thirty_steps_compile_one_graph_per_bucket(tiny_t5_wide_dir):
    model = build(tiny_t5_wide_dir)  # one layer: quicker to trace
    fast = FastPath("aot_eager", bucket_multiple=8).apply(model).fast_path
    optimizer = torch.optim.AdamW(param_groups(model, 0.3, 1e-2, other_lr=1e-2))
    rng, buckets, lengths, losses = random.Random(0), set(), set(), []
    model.train()
    for _ in range(30):  # questions of 4-13 words, one-word answers: two buckets (a compile costs ~8 s here)
        batch = random_batch(model, rng, size=2, answer_words=1, question_words=(4, 13))
        lengths.add(batch["attention_mask"].sum(1).max().item())
        buckets.add((batch["input_ids"].shape[1], batch["labels"].shape[1]))
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert len(buckets) == 2 and len(lengths) >= 6  # many real lengths, two padded ones
    assert fast.graphs == len(buckets) and fast.graph_breaks == 0
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("backbone", ["tiny_t5_dir", "tiny_bart_dir", "tiny_llama_dir"])
def test_the_training_step_has_no_graph_break(backbone, request):
    model = build(request.getfixturevalue(backbone))
    model.train()
    batch = random_batch(model, random.Random(1))
    assert graph_breaks_in(lambda **b: model(**b).loss, **batch) == []


@pytest.mark.parametrize("backbone", ["tiny_t5_dir", "tiny_bart_dir"])
def test_compiled_equals_eager_with_inductor(backbone, request):
    """Inductor's generated code (fp32, CPU) against eager: logits within 1e-5. (Gradients: the compiled run of
    test_loop.py ends with the eager run's weights.)"""
    model = build(request.getfixturevalue(backbone)).eval()
    batch = random_batch(model, random.Random(2))
    with torch.no_grad():
        eager = model(**batch)
        FastPath("inductor").apply(model, generation=False)
        compiled = model(**batch)
    assert model.fast_path.graphs == 1 and model.fast_path.graph_breaks == 0
    assert (compiled.logits - eager.logits).abs().max().item() <= 1e-5
    assert abs(compiled.loss.item() - eager.loss.item()) <= 1e-5


@pytest.mark.parametrize("backbone", ["tiny_t5_dir", "tiny_bart_dir", "tiny_llama_dir"])
def test_compiled_greedy_generation_equals_eager_and_the_teacher_forced_argmax(backbone, request):
    model = build(request.getfixturevalue(backbone)).eval()
    rng = random.Random(3)
    questions = [random_inputs(rng)[::2] for _ in range(2)]
    eager = [model.generate(**model.prepare(texts, image_features=f), max_new_tokens=4) for texts, f in questions]
    fast = FastPath("aot_eager").apply(model).fast_path
    compiled = [model.generate(**model.prepare(texts, image_features=f), max_new_tokens=4) for texts, f in questions]
    assert compiled == eager and any(any(answers) for answers in eager)
    assert fast.graphs >= 1 and fast.graph_breaks == 0
    if model.text.kind == "seq2seq":  # the compiled answers are the argmax of a teacher-forced forward pass
        texts, features = questions[0]
        batch = model.prepare(texts, image_features=features)
        embeds, mask = model.encoder_inputs(batch["input_ids"], batch["attention_mask"], image_features=features)
        gen = model.text.generate(embeds, mask, max_new_tokens=4, min_new_tokens=4, **model.generation_options)
        with torch.no_grad():
            logits = model.text.model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=gen[:, :-1]).logits
        assert torch.equal(logits.argmax(-1), gen[:, 1:])


@pytest.mark.parametrize("backbone", ["tiny_t5_dir", "tiny_llama_dir"])
def test_bucket_padding_changes_nothing_and_never_meets_a(backbone, request):
    model = build(request.getfixturevalue(backbone))
    batch = random_batch(model, random.Random(4))
    plain = model(**batch)
    plain.loss.backward()
    plain_grad = model.dept.lora_embedding_A.grad.clone()
    model.zero_grad()
    model.bucket_multiple = 16
    bucketed_batch = random_batch(model, random.Random(4))
    assert bucketed_batch["input_ids"].shape[1] > batch["input_ids"].shape[1]  # padded to its bucket
    bucketed = model(**bucketed_batch)
    bucketed.loss.backward()
    torch.testing.assert_close(bucketed.loss, plain.loss, atol=1e-6, rtol=1e-6)
    grad = model.dept.lora_embedding_A.grad
    torch.testing.assert_close(grad, plain_grad, atol=1e-6, rtol=1e-5)  # A meets the real positions only
    real = 3 + int(batch["attention_mask"].sum(1).max())  # visual tokens + the longest text
    assert grad[real:].abs().max().item() == 0.0 and grad[:real].abs().max().item() > 0


def test_for_inference(tiny_t5_dir):
    model = build(tiny_t5_dir)
    assert for_inference(model, "cpu", compile=None) is None and model.bucket_multiple is None
    fast = for_inference(model, "cpu", compile=True, backend="aot_eager", bucket_multiple=16)
    assert model.fast_path is fast and model.bucket_multiple == 16
    assert model.generation_options["cache_implementation"] == "static"
