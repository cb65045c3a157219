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
