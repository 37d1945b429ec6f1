"""A dataset with tools, uploaded in the browser: valid, counted, and its preview shows the calls
and the tool results."""

from __future__ import annotations

from tests.datacheck.factories import chats, jsonl
from tests.datacheck.parse.test_tools import good
from tests.datasets.test_routes import browser, worker_inline  # noqa: F401 (fixtures)


def test_tool_calls_and_results_show_in_the_preview(browser, worker_inline):  # noqa: F811
    data = jsonl(good(), *chats(3))
    url = browser.post("/datasets", files={"file": ("agents.jsonl", data)}, data={"eval_fraction": "0"},
                       headers={"Accept": "application/json"}).json()["url"]
    assert worker_inline == ["valid"]
    page = browser.get(url).text
    assert "1 with tools (tool calling" in page
    rows = browser.get(f"{url}/rows", headers={"HX-Request": "true"}).text
    assert "calls get_weather({&#34;city&#34;:&#34;Paris&#34;})" in rows
    assert "calls get_weather({&#34;city&#34;:&#34;Lyon&#34;})" in rows
    assert rows.count('class="bubble bubble-tool"') == 2 and "Tool result" in rows and "21 C" in rows
