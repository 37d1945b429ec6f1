"""Model directories that would run code when loaded are refused on every path, with a message
that says what to do, and their code never runs.

Two directories are built from the tiny real model: one whose only weights are a
``pytorch_model.bin`` that, unpickled, writes a sentinel file (``__reduce__`` calling
``Path.write_text``), and one whose config asks for its own code (``auto_map``, with a
``modeling_evil.py`` that writes the sentinel when imported). Each path is run for real:
``studio models add`` (a subprocess), the inference engine, a training run, the merged export,
the A/B loader and the dataset check's tokenizer.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import pytest

from app.models import BaseModel
from planner.weights import UnsafeModel
from tests.worker.training.factories import records, tiny_config


class _WritesSentinel:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.write_text, (self.path, "code from a model directory ran"))


def evil_pickle(sentinel: pathlib.Path) -> bytes:
    return pickle.dumps({"model.embed_tokens.weight": _WritesSentinel(sentinel)})


@pytest.fixture
def sentinel(tmp_path) -> pathlib.Path:
    return tmp_path / "SENTINEL"


@pytest.fixture
def pickled_dir(tiny_model_dir, tmp_path, sentinel) -> pathlib.Path:
    target = tmp_path / "pickled-model"
    shutil.copytree(tiny_model_dir, target)
    (target / "model.safetensors").unlink()
    (target / "pytorch_model.bin").write_bytes(evil_pickle(sentinel))
    return target


@pytest.fixture
def code_dir(tiny_model_dir, tmp_path, sentinel) -> pathlib.Path:
    target = tmp_path / "custom-code-model"
    shutil.copytree(tiny_model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (target / "config.json").write_text(json.dumps(config))
    (target / "modeling_evil.py").write_text(
        f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('imported')\n"
        "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilForCausalLM\n")
    return target


def test_the_payloads_are_real(tmp_path):
    """Unpickling the same payload does write its file: the sentinel checks below can fail."""
    control = tmp_path / "control"
    pickle.loads(evil_pickle(control))  # noqa: S301 (the point of the test)
    assert control.read_text() == "code from a model directory ran"


def _studio(settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir),
                   "STUDIO_DATABASE_URL": settings.database_url, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_studio_models_add_refuses_them(settings, db, pickled_dir, code_dir, sentinel):
    done = _studio(settings, "models", "add", str(pickled_dir), "--name", "Pickled")
    assert done.returncode == 1
    assert "holds only pickled weights" in done.stderr and "Convert the model to safetensors" in done.stderr
    done = _studio(settings, "models", "add", str(code_dir), "--name", "Custom code")
    assert done.returncode == 1
    assert 'config.json has "auto_map"' in done.stderr and "never runs code" in done.stderr
    # An admin may allow pickled weights in the registry; never custom code.
    done = _studio(settings, "models", "add", str(code_dir), "--name", "Custom code",
                   STUDIO_ALLOW_UNSAFE_WEIGHTS="true")
    assert done.returncode == 1 and "auto_map" in done.stderr
    db.expire_all()
    assert db.query(BaseModel).count() == 0
    assert not sentinel.exists()


def test_the_inference_engine_refuses_them(pickled_dir, code_dir, sentinel):
    from worker.inference.engine import Engine, Request

    engine = Engine()
    for model_dir, words in ((pickled_dir, "pickled weights"), (code_dir, "auto_map")):
        request = Request(base=str(model_dir), adapter=None,
                          messages=[{"role": "user", "content": "Bonjour"}], max_tokens=4)
        with pytest.raises(UnsafeModel, match=words):
            engine.generate(request)
        assert str(model_dir) not in engine.bases
    assert not sentinel.exists()


def test_the_inference_engine_loads_adapters_from_safetensors_only(tiny_model_dir, tmp_path, sentinel):
    """A checkpoint-like adapter directory whose adapter is a pickle beside some other safetensors
    file (which the directory rule lets through) is still refused: PEFT would unpickle it."""
    from worker.inference.engine import Engine, Request

    adapter = tmp_path / "checkpoint-4"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                             "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    (adapter / "adapter_model.bin").write_bytes(evil_pickle(sentinel))
    (adapter / "extra.safetensors").write_bytes(b"")
    engine = Engine()
    request = Request(base=str(tiny_model_dir), adapter=str(adapter),
                      messages=[{"role": "user", "content": "Bonjour"}], max_tokens=2)
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        engine.generate(request)
    assert not sentinel.exists() and not engine.bases[str(tiny_model_dir)].adapters


def test_a_training_run_refuses_them(pickled_dir, code_dir, sentinel, tmp_path):
    from worker.training.reporter import RecordingReporter
    from worker.training.run import run

    for model_dir, words in ((pickled_dir, "pickled weights"), (code_dir, "auto_map")):
        config = tiny_config(model_dir, max_steps=2)
        with pytest.raises(UnsafeModel, match=words):
            run(config, records(8), None, tmp_path / model_dir.name, RecordingReporter())
    assert not sentinel.exists()


def test_the_merged_export_refuses_them(pickled_dir, code_dir, sentinel, tmp_path):
    from worker.training.export import save_merged

    for model_dir, words in ((pickled_dir, "pickled weights"), (code_dir, "auto_map")):
        with pytest.raises(UnsafeModel, match=words):
            save_merged(str(model_dir), tmp_path / "adapter", tmp_path / "merged")
        assert not (tmp_path / "merged").exists()
    assert not sentinel.exists()


def test_the_ab_loader_and_the_dataset_tokenizer_refuse_them(pickled_dir, code_dir, sentinel):
    from app.inference.client import Target
    from worker.tasks import ab, datasets

    for model_dir in (pickled_dir, code_dir):
        with pytest.raises(UnsafeModel):
            ab.load(Target(base=str(model_dir), adapter=None))
        with pytest.raises(UnsafeModel):
            datasets._tokenizer(str(model_dir))
    assert not sentinel.exists()
