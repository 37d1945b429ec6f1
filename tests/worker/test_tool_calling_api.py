"""`/v1/chat/completions` with tools, through the official `openai` SDK: the web app and the real
inference app (engine, tokenizer, chat template) in process, on a tiny model fine-tuned to call
tools (the `tool_trained` fixture) and on one whose template has no tool support."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_account, make_api_key
from tests.runs.factories import register_model
from tests.worker.training.factories import CITIES, TOOLS

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def sdk(client, db, settings, monkeypatch, tool_trained, tiny_model_dir):
    from openai import OpenAI

    from app.inference import client as inference_client
    from worker.inference.engine import Engine
    from worker.inference.server import create_inference_app

    inference = create_inference_app(settings, Engine())
    monkeypatch.setattr(inference_client, "_client", lambda _settings: TestClient(inference, base_url="http://inference"))
    account = make_account(db)
    tools_model = register_model(db, tool_trained["merged"], team_id=account.team_id, name="Tool Tiny")
    plain_model = register_model(db, tiny_model_dir, team_id=account.team_id, name="Plain Tiny")
    sdk = OpenAI(base_url="http://testserver/v1", api_key=make_api_key(db, account), http_client=client,
                 max_retries=0)
    return sdk, tools_model.slug, plain_model.slug


def test_tools_give_tool_calls_and_the_result_continues_the_conversation(sdk):
    openai, model, _ = sdk
    ask = [{"role": "user", "content": "What time is it in Nice?"}]
    answer = openai.chat.completions.create(model=model, messages=ask, tools=TOOLS, temperature=0, max_tokens=40)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    # the tiny model learned the tool from the question's words; which city it copies is its own
    # business here (the accuracy test measures that): the call must be well-formed
    assert call.function.name == "get_time"
    arguments = json.loads(call.function.arguments)
    assert list(arguments) == ["city"] and arguments["city"] in CITIES

    # the call and its result go back in: the model answers from the result, with the tools still shown
    follow = ask + [choice.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "14:05"}]
    final = openai.chat.completions.create(model=model, messages=follow, tools=TOOLS, temperature=0, max_tokens=20)
    assert final.choices[0].finish_reason in ("stop", "length") and final.choices[0].message.content

    # streamed: one tool_calls delta, then the finish reason
    chunks = list(openai.chat.completions.create(model=model, messages=ask, tools=TOOLS, temperature=0,
                                                 max_tokens=40, stream=True))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and deltas[0][0].function.name == "get_time"
    assert json.loads(deltas[0][0].function.arguments) == arguments  # greedy: the same call, streamed
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # tool_choice "none": no tools shown, text back
    plain = openai.chat.completions.create(model=model, messages=ask, tools=TOOLS, tool_choice="none",
                                           temperature=0, max_tokens=10)
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason != "tool_calls"


def test_a_forced_call_that_comes_out_broken_is_returned_as_text(sdk):
    openai, model, _ = sdk
    # forcing get_weather where the model learned get_time for this question: whatever it writes is
    # returned; when the JSON does not close, it is text, never an error
    forced = {"type": "function", "function": {"name": "get_weather"}}
    answer = openai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Zzz qqq?"}],
                                            tools=TOOLS, tool_choice=forced, temperature=0, max_tokens=3)
    message = answer.choices[0].message
    assert message.tool_calls is None and message.content.startswith('<tool_call>\n{"name": "get_weather"')
    assert answer.choices[0].finish_reason != "tool_calls"


def test_refusals_name_the_reason(sdk):
    from openai import UnprocessableEntityError

    openai, model, plain_model = sdk
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    with pytest.raises(UnprocessableEntityError, match="no tool support.*Qwen2.5"):
        openai.chat.completions.create(model=plain_model, messages=ask, tools=TOOLS, max_tokens=5)
    with pytest.raises(UnprocessableEntityError, match="not one of the tools"):
        openai.chat.completions.create(model=model, messages=ask, tools=TOOLS, max_tokens=5,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    bad_schema = [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]
    with pytest.raises(UnprocessableEntityError, match="not a valid JSON Schema"):
        openai.chat.completions.create(model=model, messages=ask, tools=bad_schema, max_tokens=5)
