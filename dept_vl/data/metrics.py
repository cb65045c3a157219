"""Task metrics: the official VQA accuracy, exact match after VQA answer cleaning, BLEU-4 and CIDEr-D.

``vqa_accuracy`` follows the official VQA evaluator (GT-Vision-Lab ``vqaEval.py``) step for step, including
its quirks: punctuation, number-word, article and contraction normalisation is applied to the prediction and
the ten human answers only when those answers are not all identical, and the score is min(1, matches / 3)
averaged over the ten leave-one-out subsets. Caption metrics use pycocoevalcap's own BLEU and CIDEr-D scorers
on text tokenised without Java (lower-case, punctuation stripped).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections import defaultdict
from typing import Hashable, Iterable, Mapping, Sequence

# --- the official evaluator's tables (data, reproduced exactly) -----------------------------------------------
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official pattern (a lookahead, not a lookbehind)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_OFFICIAL_SUB_COUNT = int(re.UNICODE)  # the official code passes re.UNICODE (32) as ``count``


def _process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_SUB_COUNT)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The official VQA answer cleaning: whitespace, punctuation, number words, articles, contractions."""
    return _process_digit_article(_process_punctuation(_clean_whitespace(text)))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official per-question VQA accuracy of ``prediction`` against the (usually ten) human ``answers``."""
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    prediction = _clean_whitespace(prediction)
    answers = [_clean_whitespace(a) for a in answers]
    if len(set(answers)) > 1:
        answers = [normalize_answer(a) for a in answers]
        prediction = normalize_answer(prediction)
    scores = []
    for i in range(len(answers)):
        matches = sum(a == prediction for j, a in enumerate(answers) if j != i)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def exact_match(prediction: str, answer: str, clean: bool = True) -> float:
    """1.0 when ``prediction`` equals ``answer`` (after the VQA answer cleaning when ``clean``), else 0.0."""
    if clean:
        return float(normalize_answer(prediction) == normalize_answer(answer))
    return float(prediction.strip() == answer.strip())


def grouped_mean(scores: Iterable[float], groups: Iterable[str | None], total_key: str = "accuracy") -> dict:
    """``{total_key: mean, "<group>": mean per group, ...}``; groups that are None count only in the total."""
    overall, per_group = [], defaultdict(list)
    for score, group in zip(scores, groups):
        overall.append(score)
        if group is not None:
            per_group[group].append(score)
    result = {total_key: sum(overall) / len(overall) if overall else 0.0}
    result.update({f"{total_key}/{g}": sum(v) / len(v) for g, v in sorted(per_group.items())})
    return result


# --- captions ----------------------------------------------------------------------------------------------------
_CAPTION_PUNCT = re.compile(r"[^\w\s]")


def tokenize_caption(text: str) -> str:
    """Lower-case, strip punctuation, collapse whitespace (the PTB tokeniser's effect, without Java)."""
    return " ".join(_CAPTION_PUNCT.sub(" ", text.lower()).split())


def caption_metrics(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> dict:
    """Corpus BLEU-1..4 and CIDEr-D (pycocoevalcap's scorers) of one caption per id against its references."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    missing = [k for k in references if k not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} ids have references but no prediction, e.g. {missing[0]!r}")
    res = {k: [tokenize_caption(predictions[k])] for k in references}
    gts = {k: [tokenize_caption(r) for r in refs] for k, refs in references.items()}
    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its length statistics
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        cider, _ = Cider().compute_score(gts, res)
    return {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3], "CIDEr": float(cider)}


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity of one prediction (DocVQA / ST-VQA): the best over the answers of
    1 - edit distance / the longer length, lower-cased and trimmed; 0 where that distance is ``threshold`` or more."""
    best = 0.0
    a = " ".join(prediction.lower().split())
    for answer in answers:
        b = " ".join(answer.lower().split())
        distance = _levenshtein(a, b) / max(len(a), len(b), 1)
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
