"""`dspy://` through litellm against a real HTTP server on loopback: chat, errors, keys, the scorer refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import ProviderConfigError, ProviderError
from runtime.providers import open_provider
from runtime.providers.calls import ChatMessage, GenerateCall
from runtime.providers.dspy_lm import DspyProvider
from tests.conftest import RunDaemon
from tests.helpers import post_line
from tests.openai_server import Failure, FakeServer, serving

pytestmark = pytest.mark.anyio

KEY = "sk-dspy-test-4b7e1a9c3f5d2e8a6c0b"
CALL = GenerateCall(
    messages=[ChatMessage("user", "Plan a post about backups.")],
    prefill="Angle: I will",
    max_tokens=30,
    seed=3,
    frequency_penalty=0.5,
)


def provider(server: FakeServer) -> DspyProvider:
    opened = open_provider(f"dspy://openai/{server.model}?api_base=http://127.0.0.1:{server.port}/v1", Path("/x"))
    assert isinstance(opened, DspyProvider)
    return opened


async def test_a_litellm_model_generates_with_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serving(FakeServer(key=KEY)) as server:
        model = provider(server)
        assert "through dspy.LM" in await model.check("generator")
        result = await model.generate(CALL)
        (sent,) = server.calls("/v1/chat/completions")
    assert (result.output_tokens or 0) > 0 and result.finish_reason in ("stop", "length")
    assert sent["seed"] == 3 and sent["frequency_penalty"] == 0.5
    assert sent["messages"][-1]["content"].endswith("then go on:\nAngle: I will")


async def test_rate_limits_are_retryable_and_refused_keys_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    limited_server = FakeServer(key=KEY, failures=[Failure(429, retry_after="3")])
    with serving(limited_server) as server, pytest.raises(ProviderError) as limited:
        await provider(server).generate(CALL)
    assert limited.value.retryable
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with serving(FakeServer(key=KEY)) as server, pytest.raises(ProviderError) as refused:
        await provider(server).generate(CALL)
    assert not refused.value.retryable and "LMAuthError" in str(refused.value)


async def test_a_dspy_model_cannot_be_a_scorer() -> None:
    with pytest.raises(ProviderConfigError, match="cannot be a scorer"):
        await open_provider("dspy://openai/gpt-4o-mini", Path("/x")).check("scorer")
    with pytest.raises(ProviderConfigError, match="expected dspy://PROVIDER/MODEL"):
        open_provider("dspy://gpt-4o-mini", Path("/x"))


def test_the_daemon_mines_with_a_dspy_generator_and_a_local_scorer(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(6)))
    with serving(FakeServer(key=KEY)) as server:
        uri = f"dspy://openai/fake-model?api_base=http://127.0.0.1:{server.port}/v1"
        env = {"REER_GENERATOR": uri, "REER_SCORER": "dummy://", "OPENAI_API_KEY": KEY}
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5", env=env)
        refused = run_daemon("start", "--input", str(posts), "--exit-when-idle", env={"REER_SCORER": uri})
    assert done.returncode == 0, done.stderr
    traces = [json.loads(t) for t in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    assert traces and all(t["generators"] == [uri] and t["scorers"] == ["dummy://"] for t in traces)
    assert refused.returncode == 2 and "cannot be a scorer" in refused.stderr


async def test_a_key_the_server_quotes_back_is_not_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """litellm takes the key from the environment; a 401 that quotes it must not carry it further."""
    wrong = "sk-wrong-7c1e9a3f5b2d8e6a0c4f"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with serving(FakeServer(key=KEY)) as server, pytest.raises(ProviderError) as refused:
        await provider(server).generate(CALL)
    said = str(refused.value)
    assert "Incorrect API key provided: ***" in said  # the server did quote it
    assert not any(wrong[i : i + 6] in said for i in range(len(wrong) - 5)), said
