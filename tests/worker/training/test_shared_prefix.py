"""A prompt prefix shared by a micro-batch runs once and gives the same loss and gradients."""

from __future__ import annotations

import pytest
import torch

from tests.worker.training.factories import SYSTEM, record, records, tiny_config
from worker.training.data import PaddedCollator, PaddingFreeCollator, tokenize_records
from worker.training.loss import MIN_SHARED_PREFIX, MIN_SKIPPED_SHARE, answer_loss_sum, shared_prefix_length
from worker.training.modeling import detect_device, load_model
from worker.training.reporter import RecordingReporter
from worker.training.run import run


def batch_of(tokenizer, recs, packed=False, max_length=128):
    examples, _ = tokenize_records(recs, tokenizer, max_length)
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    return (PaddingFreeCollator() if packed else PaddedCollator(tokenizer.pad_token_id))(features)


def longer_question(topic: str) -> dict:
    rec = record(topic)
    rec["messages"][1]["content"] += " Je vous écris depuis mon téléphone, merci de répondre vite."
    return rec


def common_prefix(tokenizer, recs, max_length=128) -> int:
    """Tokens up to the first one where the examples differ (computed without the engine)."""
    rows = [e.input_ids for e in tokenize_records(recs, tokenizer, max_length)[0]]
    n = 0
    while all(len(r) > n for r in rows) and len({r[n] for r in rows}) == 1:
        n += 1
    return n


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    """A LoRA model with non-zero adapters (so every LoRA weight gets a gradient) and a full one."""
    out = {}
    for method in ("lora", "full"):
        config = tiny_config(tiny_model_dir, method=method, learning_rate=1e-3 if method == "full" else 1e-2)
        model = load_model(config, detect_device(), "fp32")
        torch.manual_seed(1)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.1)
        out[method] = model.train()
    return out


def loss_and_grads(model, batch, prefix):
    model.zero_grad()
    loss, count = answer_loss_sum(model, batch, prefix)
    loss.backward()
    return loss.item(), count, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_the_prefix_is_the_common_prompt_before_the_first_trained_token(models, tokenizer):
    recs = [record("ma facture"), longer_question("mon mot de passe"), record("un remboursement")]
    batch = batch_of(tokenizer, recs)
    expected = common_prefix(tokenizer, recs)
    assert expected > len(tokenizer(SYSTEM)["input_ids"])  # the system turn and the start of the user turn
    assert shared_prefix_length(models["lora"], batch) == expected
    # identical examples share everything up to (not including) the first trained position
    same = batch_of(tokenizer, [record("ma facture")] * 3)
    first_trained = int((same["shift_labels"][0] != -100).long().argmax())
    assert shared_prefix_length(models["lora"], same) == first_trained


def test_no_prefix_where_sharing_does_not_apply(models, tokenizer, tiny_model_dir):
    lora = models["lora"]
    assert shared_prefix_length(lora, batch_of(tokenizer, [record("ma facture")])) == 0  # one row
    assert shared_prefix_length(lora, batch_of(tokenizer, records(3), packed=True)) == 0  # packed rows
    other = {"messages": [{"role": "user", "content": "Bonjour"}, {"role": "assistant", "content": "Bonjour !"}]}
    batch = batch_of(tokenizer, [record("ma facture"), other])
    assert common_prefix(tokenizer, [record("ma facture"), other]) < MIN_SHARED_PREFIX
    assert shared_prefix_length(lora, batch) == 0  # too short to be worth a pass
    # a prefix long enough, but a small part of long rows: the extra pass would cost more than it saves
    long_rows = [record("ma facture"), record("sa facture")]
    for rec, opening in zip(long_rows, ("Salut", "Bonjour")):
        rec["messages"][1]["content"] = f"{opening}, " + "je n'arrive plus à synchroniser mes photos. " * 30
    batch = batch_of(tokenizer, long_rows, max_length=512)
    prefix = common_prefix(tokenizer, long_rows, max_length=512)
    assert prefix >= MIN_SHARED_PREFIX and prefix < MIN_SKIPPED_SHARE * batch["input_ids"].numel()
    assert shared_prefix_length(lora, batch) == 0
    checkpointed = load_model(tiny_config(tiny_model_dir, gradient_checkpointing=True), detect_device(), "fp32")
    assert shared_prefix_length(checkpointed.train(), batch_of(tokenizer, records(3))) == 0


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("lengths", ["padded", "equal"])
def test_same_loss_and_gradients_as_the_full_rows(models, tokenizer, method, lengths):
    recs = ([record("ma facture"), longer_question("la synchronisation"), record("un remboursement")]
            if lengths == "padded" else [record("ma facture"), record("sa facture"), record("ta facture")])
    batch = batch_of(tokenizer, recs)
    assert ("attention_mask" in batch) == (lengths == "padded")
    prefix = shared_prefix_length(models[method], batch)
    assert prefix >= MIN_SHARED_PREFIX
    full_loss, full_count, full_grads = loss_and_grads(models[method], batch, 0)
    loss, count, grads = loss_and_grads(models[method], batch, prefix)
    assert count == full_count > 0
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert grads.keys() == full_grads.keys() and grads
    for name, grad in grads.items():
        scale = full_grads[name].abs().max().item()
        assert scale > 0, name
        assert (grad - full_grads[name]).abs().max().item() <= 1e-4 * scale, name
    with torch.no_grad():  # evaluation takes the same path
        assert answer_loss_sum(models[method], batch, prefix)[0].item() == pytest.approx(full_loss, rel=1e-5)


def test_a_run_reports_the_share_it_did_not_compute_again(tiny_model_dir, tmp_path):
    reporter = RecordingReporter()
    result = run(tiny_config(tiny_model_dir, max_steps=2), records(16), None, tmp_path, reporter,
                 export_merged=False)
    share = result.metrics["shared_prefix_share"]
    assert 0.2 < share < 1  # 3 of 4 rows skip the system prompt and the user turn's opening
    assert any("ran once per micro-batch" in line and f"{share:.0%}" in line for line in reporter.lines)
