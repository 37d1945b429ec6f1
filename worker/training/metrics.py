"""Text metrics of generated answers against reference answers, computed with the field's libraries.

    scores = text_metrics(predictions, references, classification=False)
    # {"bleu": 0-100, "rouge1": 0-1, "rouge2": 0-1, "rougeL": 0-1, "exact_match": 0-1, "samples": n}

- BLEU is sacrebleu's corpus BLEU (its default "13a" tokenizer, 0-100), the number papers report.
- ROUGE-1/2/L are rouge_score's F-measures, averaged over the samples (0-1). rouge_score's default
  tokenizer keeps only [a-z0-9] and so cuts "téléversement" into "t l versement"; `WordTokenizer`
  keeps every Unicode letter and digit instead (lower-cased, no stemming: Porter stemming is for
  English only), and treats each CJK, kana or hangul character as a word of its own.
- exact match compares answers after lower-casing and collapsing white space; accuracy (reported for
  classification goals) also counts an answer that states the reference label and then goes on
  ("Billing. The customer asks ...").
Pure functions: no database, no model.
"""

from __future__ import annotations

import re
from statistics import fmean

import sacrebleu
from rouge_score import rouge_scorer, tokenizers

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
CLASSIFICATION_GOALS = frozenset({"classification"})
# One CJK ideograph, kana or hangul syllable (scripts written without spaces), else a run of letters/digits.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class WordTokenizer(tokenizers.Tokenizer):
    """Lower-cased Unicode words for rouge_score (see the module docstring)."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """Lower-cased, white space collapsed, outer white space removed."""
    return " ".join(text.lower().split())


def bleu(predictions: list[str], references: list[str]) -> float:
    """sacrebleu corpus BLEU (0-100) of predictions against one reference each."""
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (0-1) over the samples, with `WordTokenizer`."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=WordTokenizer())
    scores = [scorer.score(reference, prediction) for prediction, reference in zip(predictions, references)]
    return {name: fmean(s[name].fmeasure for s in scores) if scores else 0.0 for name in ROUGE_TYPES}


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after `normalize`."""
    if not predictions:
        return 0.0
    return sum(normalize(p) == normalize(r) for p, r in zip(predictions, references)) / len(predictions)


def label_matches(prediction: str, reference: str) -> bool:
    """The prediction is the reference label, or opens with it followed by a non-word character."""
    prediction, label = normalize(prediction), normalize(reference)
    if not label:
        return not prediction
    return prediction == label or (prediction.startswith(label) and not prediction[len(label)].isalnum())


def accuracy(predictions: list[str], references: list[str]) -> float:
    """Share of predictions that state their reference label (see `label_matches`)."""
    if not predictions:
        return 0.0
    return sum(label_matches(p, r) for p, r in zip(predictions, references)) / len(predictions)


def is_classification(goal: str | None) -> bool:
    return goal in CLASSIFICATION_GOALS


def text_metrics(predictions: list[str], references: list[str], *, classification: bool = False) -> dict[str, float]:
    """BLEU, ROUGE-1/2/L, exact match (and accuracy for classification) of predictions vs references."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    out = {"bleu": bleu(predictions, references), **rouge(predictions, references),
           "exact_match": exact_match(predictions, references)}
    if classification:
        out["accuracy"] = accuracy(predictions, references)
    out["samples"] = len(predictions)
    return out
