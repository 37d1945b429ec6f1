"""GGUF export of a LoRA run through the web and the studio.gguf task: asked for once (page and
API), written by the worker's code (merge, then the files), streamed back file by file; the
files are the run's model (the adapter merged in), other teams see nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.models import Artifact, RunStatus, utcnow
from app.runs import gguf
from tests.factories import log_in, make_account, make_api_key
from tests.runs.factories import make_dataset, make_run, register_model


def _lora_adapter(base_dir, target):  # noqa: ANN001, ANN202
    """A LoRA adapter with non-zero weights (no training needed to see it merged)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(target)
    with torch.no_grad():
        return model.merge_and_unload()


@pytest.mark.one_database
@pytest.mark.slow  # the conversion of the built-in model's tokenizer and three files: ~30-60 s on 2 cores
def test_a_lora_run_exported_as_gguf_and_downloaded(settings, db, client, sent, tiny_model_dir, tmp_path):
    store = client.app.state.store
    account, other = make_account(db), make_account(db)
    headers = {"Authorization": f"Bearer {make_api_key(db, account)}"}
    model = register_model(db, tiny_model_dir)
    dataset = make_dataset(db, store, account.team_id)
    run = make_run(db, account.team_id, dataset, model, status=RunStatus.succeeded, finished_at=utcnow(),
                   config={"base_model": str(tiny_model_dir), "precision": "fp32"})
    expected = _lora_adapter(tiny_model_dir, tmp_path / "adapter")
    key = f"teams/{account.team_id}/jobs/{run.id}/run/adapter"
    store.upload_tree(key, tmp_path / "adapter")
    db.add(Artifact(team_id=account.team_id, run_id=run.id, kind="adapter", path=key, content_type="application/zip"))
    db.commit()

    state = client.get(f"/api/v1/runs/{run.id}/gguf", headers=headers).json()
    assert state["status"] == "absent" and state["buildable"] and state["files"] == []
    csrf = log_in(client, account)
    assert "GGUF for llama.cpp and Ollama" in client.get(f"/runs/{run.id}").text
    page = client.get(f"/runs/{run.id}/gguf").text
    assert "Prepare the GGUF files" in page and not [m for m in sent if m[0] == gguf.GGUF_TASK]  # looking queues nothing
    first = client.get(f"/api/v1/runs/{run.id}/gguf/q8_0/download", headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "preparing"
    asked = client.post(f"/runs/{run.id}/gguf", data={"csrf_token": csrf})
    assert asked.status_code == 200 and "The GGUF files are written by a training worker" in asked.text
    assert client.post(f"/api/v1/runs/{run.id}/gguf", headers=headers).status_code == 202
    assert [m for m in sent if m[0] == gguf.GGUF_TASK] == [(gguf.GGUF_TASK, [run.id], "train")]  # once

    from worker.tasks.gguf import build_gguf

    assert build_gguf(run.id)
    assert not build_gguf(run.id)  # done: a second delivery does nothing
    state = client.get(f"/api/v1/runs/{run.id}/gguf", headers=headers).json()
    assert state["status"] == "ready"
    assert [f["name"] for f in state["files"]] == [f"run-{run.id}-f16.gguf", f"run-{run.id}-q8_0.gguf",
                                                  f"run-{run.id}-q4_0.gguf", "Modelfile"]
    page = client.get(f"/runs/{run.id}/gguf").text
    assert f"llama-cli -m run-{run.id}-q8_0.gguf" in page and f"ollama create run-{run.id} -f Modelfile" in page
    run_page = client.get(f"/runs/{run.id}").text  # the run page says it too, two lines each
    assert f"llama-server -m run-{run.id}-q8_0.gguf" in run_page and f"ollama run run-{run.id}" in run_page

    answer = client.get(f"/api/v1/runs/{run.id}/gguf/f16/download", headers=headers)
    assert answer.status_code == 200 and answer.content[:4] == b"GGUF"
    assert int(answer.headers["content-length"]) == len(answer.content) == state["files"][0]["size_bytes"]
    assert f'filename="run-{run.id}-f16.gguf"' in answer.headers["content-disposition"]
    modelfile = client.get(f"/api/v1/runs/{run.id}/gguf/modelfile/download", headers=headers)
    assert modelfile.text.startswith(f"FROM ./run-{run.id}-q8_0.gguf")

    # The f16 file holds the merged weights (the adapter's change is in it), in llama.cpp's layout.
    import gguf as gguf_lib

    path = tmp_path / "run.gguf"
    path.write_bytes(answer.content)
    reader = gguf_lib.GGUFReader(path)
    v = next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight")  # v: no rotary permutation
    got = np.asarray(v.data, dtype=np.float32)
    want = expected.model.layers[0].self_attn.v_proj.weight.numpy()
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-3)
    assert not np.allclose(got, _base_v(tiny_model_dir), atol=1e-3)

    assert client.get(f"/api/v1/runs/{run.id}/gguf/../../adapter/download", headers=headers).status_code == 404
    assert client.get(f"/api/v1/runs/{run.id}/gguf/q2_k/download", headers=headers).status_code == 404
    strangers = {"Authorization": f"Bearer {make_api_key(db, other)}"}
    assert client.get(f"/api/v1/runs/{run.id}/gguf", headers=strangers).status_code == 404
    assert client.get(f"/api/v1/runs/{run.id}/gguf/f16/download", headers=strangers).status_code == 404


def _base_v(model_dir) -> np.ndarray:  # noqa: ANN001
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="np") as fh:
        return fh.get_tensor("model.layers.0.self_attn.v_proj.weight")


def test_a_run_without_a_model_cannot_be_exported(settings, db, client, sent, tiny_model_dir):
    account = make_account(db)
    headers = {"Authorization": f"Bearer {make_api_key(db, account)}"}
    model = register_model(db, tiny_model_dir)
    run = make_run(db, account.team_id, make_dataset(db, client.app.state.store, account.team_id), model,
                   status=RunStatus.failed)
    answer = client.post(f"/api/v1/runs/{run.id}/gguf", headers=headers)
    assert answer.status_code == 409 and "Only a finished run with a trained model" in answer.text
    assert not [m for m in sent if m[0] == gguf.GGUF_TASK]
