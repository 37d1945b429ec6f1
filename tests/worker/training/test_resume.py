"""Cooperative stop and resuming from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.worker.training.factories import records, tiny_config
from worker.training import checkpoints
from worker.training.reporter import RecordingReporter
from worker.training.run import run


def config(model_dir, packing=False):
    # dropout on, so resuming must restore the RNG too; 2 epochs, so it must restore the data order
    return tiny_config(model_dir, lora_dropout=0.1, max_steps=None, epochs=2, save_strategy="steps",
                       save_steps=2, scheduler="cosine", warmup=0.2, learning_rate=1e-2, packing=packing)


def test_cooperative_stop_within_one_step(tiny_model_dir, tmp_path):
    reporter = RecordingReporter(stop_after_step=3)
    result = run(config(tiny_model_dir), records(48), None, tmp_path, reporter)
    assert result.status == "stopped"
    assert result.global_step == 3  # asked after step 3, nothing more was trained
    assert result.max_steps == 12
    checkpoint = Path(result.last_checkpoint)
    assert checkpoint.name == "checkpoint-3"  # a resumable checkpoint is written at the stop
    metadata = json.loads((checkpoint / "studio_checkpoint.json").read_text())
    assert metadata["step"] == 3 and metadata["method"] == "lora"
    assert result.adapter_dir is None  # a stopped run exports nothing
    assert reporter.checkpoints[-1][0] == 3


@pytest.mark.parametrize("packing", [False, True], ids=["length-grouped", "packed"])
def test_resume_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, packing):
    straight = RecordingReporter()
    uninterrupted = run(config(tiny_model_dir, packing), records(48), None, tmp_path / "a", straight)

    first = RecordingReporter(stop_after_step=7)  # stops mid-epoch 2, between checkpoints
    stopped = run(config(tiny_model_dir, packing), records(48), None, tmp_path / "b", first)
    assert stopped.status == "stopped" and stopped.global_step == 7
    second = RecordingReporter()
    resumed = run(config(tiny_model_dir, packing), records(48), None, tmp_path / "b", second, resume_from=True)

    assert resumed.status == "completed"
    assert resumed.global_step == uninterrupted.global_step == 12
    expected = dict(straight.series("loss"))
    after = dict(second.series("loss"))
    assert sorted(after) == list(range(8, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
    assert any("Resuming from" in line and "checkpoint-7" in line for line in second.lines)


def test_a_half_written_checkpoint_is_skipped_and_removed(tiny_model_dir, tmp_path):
    """A worker killed while saving leaves a checkpoint directory without its metadata: resume skips it."""
    stopped = run(config(tiny_model_dir), records(48), None, tmp_path, RecordingReporter(stop_after_step=4))
    assert Path(stopped.last_checkpoint).name == "checkpoint-4"
    torn = tmp_path / "checkpoints" / "checkpoint-6"  # what a SIGKILL during the Trainer's save leaves behind
    torn.mkdir()
    (torn / "trainer_state.json").write_text("{")

    second = RecordingReporter()
    resumed = run(config(tiny_model_dir), records(48), None, tmp_path, second, resume_from=True)

    assert any("Resuming from" in line and "checkpoint-4" in line for line in second.lines)
    assert resumed.status == "completed" and resumed.global_step == 12
    assert sorted(dict(second.series("loss"))) == list(range(5, 13))


def test_a_checkpoint_missing_its_weights_is_not_resumed_from(tiny_model_dir, tmp_path):
    """Its metadata is there but a file it lists is gone (a worker killed while deleting it, a disk
    cleaned by hand): resume takes the newest whole checkpoint instead, and removes the torn one."""
    stopped = run(config(tiny_model_dir), records(48), None, tmp_path, RecordingReporter(stop_after_step=5))
    assert [p.name for p in checkpoints.directories(tmp_path / "checkpoints")] == ["checkpoint-2", "checkpoint-4",
                                                                                  "checkpoint-5"]
    assert Path(stopped.last_checkpoint).name == "checkpoint-5"
    (tmp_path / "checkpoints" / "checkpoint-5" / "adapter_model.safetensors").unlink()
    assert checkpoints.latest_complete(tmp_path / "checkpoints").endswith("checkpoint-4")

    second = RecordingReporter()
    resumed = run(config(tiny_model_dir), records(48), None, tmp_path, second, resume_from=True)

    assert any("Removed checkpoint-5" in line for line in second.lines)
    assert any("Resuming from" in line and "checkpoint-4" in line for line in second.lines)
    assert resumed.status == "completed" and resumed.global_step == 12
    assert sorted(dict(second.series("loss"))) == list(range(5, 13))


def test_old_checkpoints_are_deleted_by_step_and_never_left_half_deleted(tiny_model_dir, tmp_path):
    limited = config(tiny_model_dir).model_copy(update={"save_total_limit": 2})
    reporter = RecordingReporter()
    result = run(limited, records(48), None, tmp_path, reporter)
    assert result.status == "completed"
    kept = checkpoints.directories(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["checkpoint-10", "checkpoint-12"]
    assert all(checkpoints.is_complete(p) for p in kept)
    assert [step for step, *_ in reporter.checkpoints] == [2, 4, 6, 8, 10, 12]
    assert reporter.deleted_checkpoints == [2, 4, 6, 8]  # each as soon as two newer ones were whole
    assert not list((tmp_path / "checkpoints").glob("deleting-*"))

    # A worker killed halfway through deleting one leaves it under another name: never resumed from,
    # and cleared at the next resume.
    leftover = tmp_path / "checkpoints" / "deleting-checkpoint-8"
    leftover.mkdir()
    (leftover / checkpoints.METADATA).write_text("{}")
    assert checkpoints.latest_complete(tmp_path / "checkpoints").endswith("checkpoint-12")
    assert checkpoints.clean(tmp_path / "checkpoints") == ["deleting-checkpoint-8"]
    assert not leftover.exists()


def test_resuming_from_the_final_checkpoint_trains_nothing_more(tiny_model_dir, tmp_path):
    """A worker killed after the last checkpoint (while exporting) is resumed from that checkpoint:
    the run goes straight to its outputs. 9 steps of 6 per epoch end mid-epoch, where the Trainer
    itself would train a 10th step."""
    finished = config(tiny_model_dir).model_copy(update={"epochs": None, "max_steps": 9, "save_steps": 3})
    straight = run(finished, records(48), None, tmp_path / "a", RecordingReporter())
    assert straight.status == "completed" and straight.global_step == 9
    assert Path(straight.last_checkpoint).name == "checkpoint-9"

    second = RecordingReporter()
    resumed = run(finished, records(48), None, tmp_path / "a", second, resume_from=True)

    assert any("Resuming from" in line and "checkpoint-9" in line for line in second.lines)
    assert resumed.status == "completed" and resumed.global_step == resumed.max_steps == 9
    assert second.series("loss") == []  # not one more step
    assert second.progress[-1][:2] == (9, 9)
    assert resumed.metrics["loss"] == pytest.approx(straight.metrics["loss"])
    assert resumed.metrics["train_loss"] == pytest.approx(straight.metrics["train_loss"], rel=1e-6)
    before = load_file(Path(straight.adapter_dir) / "adapter_model.safetensors")
    after = load_file(Path(resumed.adapter_dir) / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True], ids=["length-grouped", "packed"])
def test_resume_with_half_the_micro_batch_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, packing):
    """An out-of-memory retry resumes with the micro-batch halved and the accumulation doubled: the
    optimizer state, the global step and the data position carry over, every later step trains on
    the same examples, so the losses and the trained adapter are those of the uninterrupted run."""
    def cfg(**overrides):  # noqa: ANN202  (no dropout: its masks depend on how a step is split)
        return config(tiny_model_dir, packing).model_copy(update={"lora_dropout": 0.0, **overrides})

    data = records(42)  # 42 is not a multiple of the step batch: each epoch ends with a partial step
    straight = RecordingReporter()
    uninterrupted = run(cfg(), data, None, tmp_path / "a", straight)
    stopped = run(cfg(), data, None, tmp_path / "b", RecordingReporter(stop_after_step=7))
    assert stopped.global_step == 7
    second = RecordingReporter()
    resumed = run(cfg(per_device_batch_size=2, grad_accum=4), data, None, tmp_path / "b", second, resume_from=True)

    assert resumed.global_step == uninterrupted.global_step == 12
    expected, after = dict(straight.series("loss")), dict(second.series("loss"))
    assert sorted(after) == list(range(8, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(expected[step], rel=1e-4, abs=1e-5)
    a = load_file(str(Path(uninterrupted.adapter_dir) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed.adapter_dir) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-5)
    state = torch.load(Path(resumed.last_checkpoint) / "optimizer.pt", weights_only=False)["state"]
    assert {int(s["step"]) for s in state.values()} == {12}  # AdamW's own count went on from 7
