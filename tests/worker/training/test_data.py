"""Masking, truncation and batching of chat records."""

from __future__ import annotations

import pytest

from tests.worker.training.factories import SIGNATURE, answer, record
from worker.training.data import (
    IGNORE_INDEX,
    DataError,
    PaddedCollator,
    PaddingFreeCollator,
    TorchDataset,
    tokenize_records,
)


def trained_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])


def test_only_the_answer_and_its_end_of_turn_are_trained(tokenizer):
    (example,), report = tokenize_records([record("ma facture")], tokenizer, 512)
    assert trained_text(tokenizer, example) == answer("ma facture") + "<|im_end|>"
    full = tokenizer.decode(example.input_ids)
    assert "system" in full and "J'ai une question" in full  # present in the input, not trained
    assert report.trained_tokens == example.trained_tokens < report.total_tokens


def test_weight_zero_turns_are_masked_and_later_turns_trained(tokenizer):
    conversation = {"messages": [
        {"role": "user", "content": "Premier essai"},
        {"role": "assistant", "content": "Réponse à ne pas apprendre.", "weight": 0},
        {"role": "user", "content": "Deuxième essai"},
        {"role": "assistant", "content": "Réponse à apprendre."},
    ]}
    (example,), _ = tokenize_records([conversation], tokenizer, 512)
    assert trained_text(tokenizer, example) == "Réponse à apprendre.<|im_end|>"


def test_all_masked_data_is_refused_with_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="Nothing to learn.*weight 0"):
        tokenize_records([record("ma facture", weight=0)] * 3, tokenizer, 512)


def test_invalid_records_are_explained(tokenizer):
    with pytest.raises(DataError, match="Example 2, message 1: role must be"):
        tokenize_records([record("a"), {"messages": [{"role": "bot", "content": "x"}]}], tokenizer, 512)
    with pytest.raises(DataError, match="only assistant messages can have a weight"):
        tokenize_records([{"messages": [{"role": "user", "content": "x", "weight": 1}]}], tokenizer, 512)


def test_truncation_is_counted_and_answerless_examples_dropped(tokenizer):
    long_answer = {"messages": [{"role": "user", "content": "Question"},
                                {"role": "assistant", "content": "mot " * 200}]}
    long_prompt = {"messages": [{"role": "user", "content": "contexte " * 200},
                                {"role": "assistant", "content": "Oui."}]}
    examples, report = tokenize_records([long_answer, long_prompt, record("ma facture")], tokenizer, 100)
    assert report.truncated_examples == 2
    assert report.truncated_tokens > 250
    assert report.dropped_no_answer == 1  # the long prompt left no room for its answer
    assert len(examples) == report.kept == 2
    assert all(len(e.input_ids) <= 100 for e in examples)
    assert "cut" in report.summary()


def test_padding_free_batches_keep_examples_apart(tokenizer):
    examples, _ = tokenize_records([record("ma facture"), record("la synchronisation")], tokenizer, 512)
    batch = PaddingFreeCollator()([TorchDataset(examples)[0], TorchDataset(examples)[1]])
    first, second = (len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == (1, first + second)  # no padding at all
    assert batch["position_ids"][0, first].item() == 0  # second example restarts its positions
    # nothing predicts across the boundary; the last answer token of each example is trained
    assert batch["shift_labels"][0, first - 1].item() == IGNORE_INDEX
    assert batch["shift_labels"][0, first - 2].item() == examples[0].labels[-1]


def test_padded_batches_mask_padding(tokenizer):
    examples, _ = tokenize_records([record("ma facture"), {"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "R"}]}], tokenizer, 512)
    batch = PaddedCollator(tokenizer.pad_token_id)([TorchDataset(examples)[0], TorchDataset(examples)[1]])
    assert batch["attention_mask"].sum().item() == sum(len(e.input_ids) for e in examples)
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_signature_survives_tokenization(tokenizer):
    (example,), _ = tokenize_records([record("ma facture")], tokenizer, 512)
    assert SIGNATURE in trained_text(tokenizer, example)


def test_report_counts_trained_tokens_per_example(tokenizer):
    examples, report = tokenize_records([record("ma facture"), record("la synchronisation")], tokenizer, 512)
    per_example = report.as_dict(per_example=True)["trained_tokens_per_example"]
    assert per_example == [e.trained_tokens for e in examples] and all(n > 10 for n in per_example)
    assert "trained_tokens_per_example" not in report.as_dict()


def test_the_preview_is_the_trainers_own_mask_drawn_as_text(tokenizer):
    """preview_record runs encode_record/fit_example, the functions tokenize_records uses: the
    trained runs of its segments are exactly the tokens the trainer learns, and the text is
    the whole rendered template."""
    from worker.training.data import first_trained_position, preview_record

    conversation = {"messages": [
        {"role": "user", "content": "Premier essai"},
        {"role": "assistant", "content": "Réponse à ne pas apprendre.", "weight": 0},
        {"role": "user", "content": "Deuxième essai"},
        {"role": "assistant", "content": "Réponse à apprendre."},
    ]}
    preview = preview_record(tokenizer, conversation["messages"])
    (example,), _ = tokenize_records([conversation], tokenizer, 4096)
    trained = "".join(s["text"] for s in preview["segments"] if s["trained"])
    assert trained == trained_text(tokenizer, example) == "Réponse à apprendre.<|im_end|>"
    text = "".join(s["text"] for s in preview["segments"])
    assert text == tokenizer.apply_chat_template(
        [{k: m[k] for k in ("role", "content")} for m in conversation["messages"]], tokenize=False)
    assert "Réponse à ne pas apprendre." in text  # shown, dimmed
    assert preview["tokens"] == len(example.input_ids)
    positions = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX]
    assert preview["first_trained"] == positions[0] == first_trained_position(tokenizer, conversation["messages"])
    trained_positions = [i for s in preview["segments"] if s["trained"] for i in range(s["start"], s["end"])]
    assert trained_positions == positions
    # cut before the first trained token: the trainer learns nothing from it, as the preview says
    with pytest.raises(DataError, match="Nothing to learn"):
        tokenize_records([conversation], tokenizer, preview["first_trained"])
    assert tokenize_records([conversation], tokenizer, preview["first_trained"] + 1)[1].trained_tokens == 1
