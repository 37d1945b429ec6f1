"""The serving check: rank, target modules, DoRA and saved modules against vLLM and llama.cpp."""

from __future__ import annotations

from types import SimpleNamespace

from app.registry import serving
from tests.registry.conftest import bearer, tuned


def _run(method="lora", **config):  # noqa: ANN001, ANN202
    return SimpleNamespace(method=method, config=config)


def _levels(check) -> dict:  # noqa: ANN001
    return {(f.engine, f.level) for f in check.findings}


def test_a_plain_small_adapter_loads_everywhere():
    check = serving.check(_run(lora_r=8, target_modules="attention_mlp", precision="bf16"), None)
    assert check.warnings == [] and check.rank == 8 and "down_proj" in check.target_modules
    assert _levels(check) == {("vllm", "ok"), ("llama.cpp", "ok")}


def test_rank_above_vllm_default_needs_the_flag_and_above_256_does_not_load():
    warned = serving.check(_run(lora_r=64), None)
    assert [f.message for f in warned.warnings if f.engine == "vllm"][0].endswith("--max-lora-rank 64.")
    assert ("vllm", "error") in _levels(serving.check(_run(lora_r=512), None))


def test_dora_embeddings_and_qlora_are_flagged_from_the_adapter_config():
    adapter = {"r": 16, "target_modules": ["q_proj", "v_proj", "lm_head"], "use_dora": True,
               "modules_to_save": ["embed_tokens"], "bias": "none"}
    check = serving.check(_run(method="qlora", lora_r=8), adapter)
    assert check.source == "adapter_config.json" and check.use_dora and check.rank == 16
    messages = " ".join(f.message for f in check.warnings)
    assert "DoRA" in messages and "lm_head" in messages and "embed_tokens" in messages and "4-bit" in messages
    assert ("vllm", "error") in _levels(check) and ("llama.cpp", "error") in _levels(check)


def test_a_full_fine_tune_has_no_adapter_limits():
    check = serving.check(_run(method="full", lora_r=512), None)
    assert check.kind == "model" and check.warnings == []


def test_the_api_and_page_show_the_warning(client, db, store, team, dataset, model, owner_key, make_client):
    from tests.factories import log_in

    run = tuned(db, store, team.team_id, dataset, model, suffix="big", adapter={"r": 128, "target_modules": ["q_proj"]})
    groups = client.get("/api/v1/registry/models", headers=bearer(owner_key)).json()
    version = groups[0]["versions"][0]
    assert version["run_id"] == run.id and version["serving"]["ok"] is False
    assert version["serving"]["source"] == "adapter_config.json"
    one = client.get(f"/api/v1/registry/versions/{version['id']}/serving", headers=bearer(owner_key)).json()
    assert one == version["serving"]
    browser = make_client()
    log_in(browser, team.owner)
    assert "<code>--max-lora-rank</code> 128." in browser.get("/models").text
