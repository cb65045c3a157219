"""The official VQA accuracy on hand-checked cases; BLEU-4 / CIDEr-D against pycocoevalcap."""

import pytest

from dept_vl.data.metrics import caption_metrics, exact_match, grouped_mean, normalize_answer, tokenize_caption, vqa_accuracy


@pytest.mark.parametrize("prediction, answers, expected", [
    ("2", ["2"] * 10, 1.0),
    ("two", ["2"] * 10, 0.0),  # all ten identical: the official evaluator does not normalise
    ("two", ["2"] * 6 + ["two", "3", "2", "1"], 1.0),  # "two" -> "2": eight matches in every subset
    ("3", ["2"] * 6 + ["two", "3", "2", "1"], 0.3),  # one match in 9 subsets (1/3), none in 1
    ("a dog", ["dog"] * 2 + ["cat"] * 8, 0.6),  # article dropped; (2 * 1/3 + 8 * 2/3) / 10
    ("dont", ["don't"] * 3 + ["no"] * 7, 0.9),  # contraction restored; (3 * 2/3 + 7 * 1) / 10
    ("yes.", ["yes"] * 9 + ["no"], 1.0),  # final period stripped
    ("yes.", ["yes"] * 10, 0.0),
    ("1,000", ["1000"] * 5 + ["1,000"] * 5, 1.0),  # digit comma removed
    (" cat\n", ["cat"] * 10, 1.0),  # whitespace is always cleaned
    ("red", ["red"] * 2 + ["blue"] * 8, 0.6),
])
def test_vqa_accuracy_hand_checked(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


def test_normalize_answer_and_exact_match():
    assert normalize_answer("The Two Dogs!") == "2 dogs"
    assert normalize_answer("left-side") == "left side"
    assert exact_match("A cup.", "cup") == 1.0 and exact_match("A cup.", "cup", clean=False) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])


def test_grouped_mean():
    result = grouped_mean([1.0, 0.0, 1.0, 1.0], ["a", "a", "b", None])
    assert result == {"accuracy": 0.75, "accuracy/a": 0.5, "accuracy/b": 1.0}


REFS = {
    1: ["A dog runs on the grass.", "A brown dog running in a field.", "The dog is running outside."],
    2: ["A man rides a red bicycle.", "A person on a bike in the street.", "Someone cycling down a road."],
    3: ["Two cats sleep on a sofa.", "A pair of cats napping on a couch.", "Cats asleep on the sofa."],
}


def test_caption_metrics_equal_pycocoevalcap_on_tokenised_text():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    preds = {1: "A dog running on grass!", 2: "A MAN riding a bike.", 3: "two cats on a couch"}
    ours = caption_metrics(preds, REFS)
    gts = {k: [tokenize_caption(r) for r in v] for k, v in REFS.items()}
    res = {k: [tokenize_caption(v)] for k, v in preds.items()}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    assert ours["BLEU-4"] == pytest.approx(bleu[3]) and ours["CIDEr"] == pytest.approx(cider)
    assert 0.0 < ours["BLEU-4"] < 1.0 and 0.0 < ours["CIDEr"] < 10.0
    # by hand: 14 of 15 unigrams match ("riding" does not), each hypothesis as long as its closest reference
    assert ours["BLEU-1"] == pytest.approx(14 / 15)


def test_caption_metrics_perfect_and_wrong():
    single = {k: [v[0]] for k, v in REFS.items()}  # one reference each, so a copy of it is perfect
    perfect = caption_metrics({k: v[0] for k, v in single.items()}, single)
    assert perfect["BLEU-4"] == pytest.approx(1.0) and perfect["CIDEr"] == pytest.approx(10.0)
    wrong = caption_metrics({k: "zebra xylophone quartz" for k in REFS}, REFS)
    assert wrong["CIDEr"] == 0.0 and wrong["BLEU-4"] < 1e-6
    assert tokenize_caption("A Dog, running!") == "a dog running"
    with pytest.raises(ValueError, match="no prediction"):
        caption_metrics({1: "a dog"}, REFS)
