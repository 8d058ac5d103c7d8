"""Drive pydantic-ai's real OpenAI chat and Anthropic models end to end against FakeProvider."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic_ai import Agent
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

# tests/ has no __init__.py, so pytest's default `prepend` import mode puts this directory on sys.path.
from support.fake_provider import DEFAULT_USAGE, FakeProvider


def openai_model(fp: FakeProvider) -> Model:
    # The OpenAI SDK appends `/chat/completions` to base_url, so the `/v1` prefix is ours to add.
    return OpenAIChatModel("gpt-4o", provider=OpenAIProvider(base_url=fp.base_url + "/v1", api_key="test"))


def anthropic_model(fp: FakeProvider) -> Model:
    # The Anthropic SDK appends `/v1/messages` itself, so base_url is the bare host. The model name must not be
    # one the SDK lists as deprecated (e.g. claude-sonnet-4-5), or it emits a DeprecationWarning per request.
    return AnthropicModel("claude-haiku-4-5", provider=AnthropicProvider(base_url=fp.base_url, api_key="test"))


MODELS = pytest.mark.parametrize("make_model", [openai_model, anthropic_model], ids=["openai", "anthropic"])
TOOL_CALL = {"id": "call_1", "name": "calculator", "args": {"expression": "2+2"}}


def make_agent(model: Model, seen: list[str]) -> Agent:
    agent = Agent(model)

    @agent.tool_plain
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        seen.append(expression)
        return "4"

    return agent


def tool_result_sent(fp: FakeProvider) -> bool:
    """Whether the second request carried our tool's result back under the streamed call id."""
    last = fp.requests[1]["messages"][-1]
    if last["role"] == "tool":  # OpenAI: a `tool` role message
        return last["tool_call_id"] == "call_1" and last["content"] == "4"
    return any(  # Anthropic: a `tool_result` block in the next user message
        block.get("type") == "tool_result" and block.get("tool_use_id") == "call_1" for block in last["content"]
    )


@MODELS
@pytest.mark.asyncio
async def test_streaming_tool_call_then_text(make_model: Callable[[FakeProvider], Model]) -> None:
    script = [
        {"tool_call": TOOL_CALL, "usage": {"input_tokens": 11, "output_tokens": 7}},
        {"text": "The answer is 4.", "usage": {"input_tokens": 20, "output_tokens": 9}},
    ]
    seen: list[str] = []
    with FakeProvider(script) as fp:
        # Entering the agent makes it close the provider's HTTP client (and its sockets) on exit.
        async with make_agent(make_model(fp), seen) as agent, agent.run_stream("What is 2+2?") as result:
            deltas = [d async for d in result.stream_text(delta=True, debounce_by=None)]
            usage = result.usage  # a property in pydantic-ai 2.x; calling it is deprecated

    assert seen == ["2+2"]  # args were reassembled from fragments
    assert "".join(deltas) == "The answer is 4." and len(deltas) > 1
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 31, 16)
    assert len(fp.requests) == 2 and all(r["stream"] is True for r in fp.requests)
    assert tool_result_sent(fp)
    if make_model is openai_model:  # usage only arrives in the stream because pydantic-ai asks for it
        assert fp.requests[0]["stream_options"] == {"include_usage": True}


@MODELS
@pytest.mark.asyncio
async def test_non_streaming_and_exhausted_script(make_model: Callable[[FakeProvider], Model]) -> None:
    seen: list[str] = []
    with FakeProvider([{"tool_call": TOOL_CALL}]) as fp:
        # AnthropicModel streams "non-streaming" requests behind the scenes when the default max_tokens
        # (the model's max output) exceeds the SDK's non-streaming limit, so pin a small one.
        async with make_agent(make_model(fp), seen) as agent:
            result = await agent.run("What is 2+2?", model_settings={"max_tokens": 1024})

    assert seen == ["2+2"]
    assert result.output == "done"  # the script ran out after the tool call
    usage = result.usage
    assert usage.input_tokens == 2 * DEFAULT_USAGE["input_tokens"]  # both turns used the defaults
    assert usage.output_tokens == 2 * DEFAULT_USAGE["output_tokens"]
    assert not any(r.get("stream") for r in fp.requests)
    assert tool_result_sent(fp)

