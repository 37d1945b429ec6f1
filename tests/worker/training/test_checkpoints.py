"""Which checkpoint directories count as whole, and how old ones are deleted."""

from __future__ import annotations

import json

from worker.training import checkpoints


def saved(root, step, *, weights="adapter_model.safetensors", seal=True):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / weights).write_bytes(b"w" * 64)
    (path / "trainer_state.json").write_text('{"global_step": %d}' % step)
    (path / "optimizer.pt").write_bytes(b"o" * 32)
    if seal:
        checkpoints.write_metadata(path, {"step": step})
    return path


def test_a_sealed_checkpoint_lists_its_files_and_sizes(tmp_path):
    path = saved(tmp_path, 3)
    metadata = json.loads((path / checkpoints.METADATA).read_text())
    assert metadata["step"] == 3
    assert metadata["files"] == {"adapter_model.safetensors": 64, "optimizer.pt": 32,
                                 "trainer_state.json": len('{"global_step": 3}')}
    assert checkpoints.is_complete(path)
    assert not list(path.glob(".*tmp"))


def test_damage_of_any_kind_makes_a_checkpoint_incomplete(tmp_path):
    unsealed = saved(tmp_path, 1, seal=False)  # killed while the Trainer was saving
    gone = saved(tmp_path, 2)
    (gone / "adapter_model.safetensors").unlink()  # killed while deleting it
    short = saved(tmp_path, 3)
    (short / "optimizer.pt").write_bytes(b"o")  # truncated
    weightless = tmp_path / "checkpoint-4"  # sealed although the Trainer wrote no weights
    weightless.mkdir()
    (weightless / "trainer_state.json").write_text("{}")
    checkpoints.write_metadata(weightless, {"step": 4})
    garbled = saved(tmp_path, 5)
    (garbled / checkpoints.METADATA).write_text("{")
    for path in (unsealed, gone, short, weightless, garbled):
        assert not checkpoints.is_complete(path), path.name
    assert checkpoints.latest_complete(tmp_path) is None

    whole = saved(tmp_path, 0, weights="model.safetensors")  # a full fine-tune's checkpoint
    assert checkpoints.latest_complete(tmp_path) == str(whole)
    assert sorted(checkpoints.clean(tmp_path)) == [f"checkpoint-{n}" for n in range(1, 6)]
    assert [p.name for p in checkpoints.directories(tmp_path)] == ["checkpoint-0"]
    assert not list(tmp_path.glob("deleting-*"))


def test_rotation_keeps_the_newest_steps_not_the_newest_files(tmp_path):
    for step in (10, 2, 4, 8, 6):  # written out of order: modification times say nothing
        saved(tmp_path, step)
    saved(tmp_path, 12, seal=False)  # still being written: neither counted nor deleted
    assert checkpoints.rotate(tmp_path, 2) == [2, 4, 6]
    assert [p.name for p in checkpoints.directories(tmp_path)] == ["checkpoint-8", "checkpoint-10", "checkpoint-12"]
    assert checkpoints.rotate(tmp_path, None) == []
    assert not list(tmp_path.glob("deleting-*"))


def test_a_checkpoint_sealed_by_an_older_studio_is_still_resumable(tmp_path):
    """Older metadata has no file list: an upgrade mid-run must not throw the run's progress away."""
    old = saved(tmp_path, 4, seal=False)
    (old / checkpoints.METADATA).write_text(json.dumps({"step": 4, "method": "lora"}))
    assert checkpoints.is_complete(old)
    assert checkpoints.clean(tmp_path) == []
    (old / "adapter_model.safetensors").unlink()  # but not without its weights
    assert not checkpoints.is_complete(old)
