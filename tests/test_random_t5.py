from transformers import AutoTokenizer

from dept_vl.models.random_t5 import build_word_tokenizer


def test_word_tokenizer_round_trip(tmp_path):
    tok = build_word_tokenizer(["What is the blue shape?", "Is there a red circle?", "rectangle"])
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("what is the red circle?")["input_ids"]
    assert ids[-1] == 1 and 2 not in ids
    assert tok("a purple circle")["input_ids"][1] == 2  # unknown word
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("what is the red circle?")["input_ids"] == ids
    assert loaded.decode(ids, skip_special_tokens=True) == "what is the red circle?"
    assert len(loaded) == 3 + 11  # what is the blue shape ? there a red circle rectangle


def test_materializing_leaves_the_callers_random_state_alone(tmp_path):
    import torch

    from dept_vl import ModelConfig
    from dept_vl.models.random_t5 import materialize_random_backbone

    config = ModelConfig.from_dict({"text": {"backbone": "random", "random": {"d_model": 16, "d_ff": 32,
                                                                               "num_layers": 1, "num_heads": 2}}})
    for _ in range(2):  # built, then found already there
        torch.manual_seed(5)
        resolved = materialize_random_backbone(config, ["a red circle"], tmp_path / "backbone")
        after = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(after, torch.rand(3))
    assert resolved.text.backbone == str((tmp_path / "backbone").resolve()) and config.text.backbone == "random"
    assert (tmp_path / "backbone" / "config.json").is_file() and not list(tmp_path.glob(".*"))
