"""A dataset with tools trains only on a base model whose chat template renders tools: the web
refuses any other before queueing, naming models that have the support."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Run
from tests.runs.factories import make_dataset, register_model, write_model_dir

TOOL_TEMPLATE = "{% for t in tools %}{{ t }}{% endfor %}{% for m in messages %}{{ m.tool_calls }}{% endfor %}"


def test_a_dataset_with_tools_needs_a_template_with_tool_support(client, team, model, db, store, sent, tmp_path):
    acc, headers = team
    dataset = make_dataset(db, store, acc.team_id, name="agents")
    dataset.report = {**dataset.report, "counts": {**dataset.report["counts"], "with_tools": 12}}
    db.commit()
    tool_dir = write_model_dir(tmp_path / "tool-model")
    (tool_dir / "chat_template.jinja").write_text(TOOL_TEMPLATE)
    tool_model = register_model(db, tool_dir, name="Tool Llama")
    assert tool_model.chat_template == TOOL_TEMPLATE

    r = client.post("/api/v1/runs", json={"dataset_id": dataset.id, "base_model_id": model.id}, headers=headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == "base_model_id"
    assert "'Tiny Llama' has a chat template without tool support" in error["message"]
    assert "Qwen2.5 Instruct" in error["message"] and "these have it: Tool Llama." in error["message"]
    assert sent == [] and db.scalar(select(Run)) is None

    r = client.post("/api/v1/runs", json={"dataset_id": dataset.id, "base_model_id": tool_model.id}, headers=headers)
    assert r.status_code == 201, r.text
    plain = make_dataset(db, store, acc.team_id, name="plain")  # without tools, any template trains
    r = client.post("/api/v1/runs", json={"dataset_id": plain.id, "base_model_id": model.id}, headers=headers)
    assert r.status_code == 201, r.text
