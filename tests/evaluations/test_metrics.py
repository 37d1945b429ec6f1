"""Text metrics against reference values computed with sacrebleu and rouge_score directly on
fixed inputs, hand-checked simple cases, and the Unicode word tokenizer used for ROUGE."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from worker.training import metrics

PREDICTIONS = [
    "Bonjour et merci de votre message ! Ouvrez Réglages > Réseau et retirez la limite de débit.",
    "Hello, reset your password from the login page.",
    "La suppression se demande dans Compte > Confidentialité.",
]
REFERENCES = [
    "Bonjour et merci de votre message ! Sur Linux, ouvrez Réglages > Réseau et retirez la limite de débit.",
    "Hello! You can reset your password from the login page.",
    "Bonjour ! La suppression se demande dans Compte > Confidentialité ; tout est effacé sous 3 jours.",
]


def test_bleu_is_sacrebleu_corpus_bleu():
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    assert metrics.bleu(PREDICTIONS, REFERENCES) == pytest.approx(expected, abs=1e-9)
    assert 20 < expected < 90  # a real, non-trivial value


def test_rouge_is_rouge_score_with_the_unicode_tokenizer():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=metrics.WordTokenizer())
    scores = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES)]
    got = metrics.rouge(PREDICTIONS, REFERENCES)
    for name in ("rouge1", "rouge2", "rougeL"):
        assert got[name] == pytest.approx(sum(s[name].fmeasure for s in scores) / len(scores), abs=1e-12)
    # English text has no accents: the default tokenizer gives the same numbers there
    default = rouge_scorer.RougeScorer(["rougeL"]).score(REFERENCES[1], PREDICTIONS[1])["rougeL"].fmeasure
    assert metrics.rouge(PREDICTIONS[1:2], REFERENCES[1:2])["rougeL"] == pytest.approx(default)


def test_rouge_values_by_hand():
    # prediction "the cat sat" vs reference "the cat sat on the mat": 3 shared words, LCS 3
    got = metrics.rouge(["the cat sat"], ["the cat sat on the mat"])
    precision, recall = 3 / 3, 3 / 6
    assert got["rouge1"] == pytest.approx(2 * precision * recall / (precision + recall))  # 0.6667
    assert got["rougeL"] == pytest.approx(2 / 3)
    assert got["rouge2"] == pytest.approx(2 * 1 * (2 / 5) / (1 + 2 / 5))  # 2 of 2 vs 2 of 5 bigrams


def test_identical_answers_score_full_marks():
    out = metrics.text_metrics(REFERENCES, REFERENCES, classification=True)
    assert out["bleu"] == pytest.approx(100.0)
    assert out["rouge1"] == out["rouge2"] == out["rougeL"] == pytest.approx(1.0)
    assert out["exact_match"] == out["accuracy"] == 1.0 and out["samples"] == 3


def test_disjoint_answers_score_zero():
    out = metrics.text_metrics(["alpha beta gamma delta"], ["un deux trois quatre"], classification=True)
    assert out["bleu"] == 0.0 and out["rouge1"] == out["rouge2"] == out["rougeL"] == 0.0
    assert out["exact_match"] == out["accuracy"] == 0.0


def test_the_tokenizer_keeps_accented_words_that_the_default_one_breaks():
    assert metrics.WordTokenizer().tokenize("Téléversement : ça marche, Noël!") == ["téléversement", "ça", "marche", "noël"]
    # the default tokenizer keeps [a-z0-9] only: "été" (summer) and "ôté" (removed) both become "t"
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score("été", "ôté")["rouge1"].fmeasure == 1.0
    assert metrics.rouge(["ôté"], ["été"])["rouge1"] == 0.0
    assert metrics.rouge(["réseau lent"], ["réseau rapide"])["rouge1"] == pytest.approx(0.5)
    assert metrics.WordTokenizer().tokenize("東京タワー") == ["東", "京", "タ", "ワ", "ー"]


def test_exact_match_ignores_case_and_spacing_only():
    assert metrics.exact_match(["  Billing\n", "billing."], ["billing", "billing"]) == 0.5


def test_accuracy_accepts_a_label_followed_by_an_explanation():
    preds = ["Billing. The customer asks about an invoice.", "billing", "Billingual", "Technical"]
    refs = ["billing"] * 4
    assert metrics.accuracy(preds, refs) == 0.5
    assert metrics.is_classification("classification") and not metrics.is_classification("brand_voice")
    assert "accuracy" not in metrics.text_metrics(preds, refs)


def test_empty_and_mismatched_inputs():
    assert metrics.text_metrics([], [])["bleu"] == 0.0
    with pytest.raises(ValueError):
        metrics.text_metrics(["a"], [])
