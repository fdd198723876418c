"""`openai://` against a real HTTP server on loopback: generation, scoring, start checks, errors, keys."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.limiter import Limiter, malformed
from bus.bus import Bus
from runtime.config import LimitSettings
from runtime.errors import ProviderConfigError, ProviderError
from runtime.providers import open_provider
from runtime.providers.base import continue_with, render_chat
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, ScoreCall
from runtime.providers.dummy import DummyModel, DummyProvider
from runtime.providers.openai_compatible import OpenAIProvider
from runtime.records import DeadLetter
from runtime.store import JsonlStore
from tests.conftest import RunDaemon
from tests.helpers import post_line
from tests.openai_server import Failure, FakeServer, serving

pytestmark = pytest.mark.anyio

CHAT = [ChatMessage("system", "You write plans."), ChatMessage("user", "Plan a post about backups.")]
KEY = "sk-reer-test-5f1c9a7e2b8d4c6f0a3e9b1d7c5a2f8e"


def provider(uri: str) -> OpenAIProvider:
    opened = open_provider(uri, Path("/nonexistent"))
    assert isinstance(opened, OpenAIProvider)
    return opened


async def test_an_answer_without_finish_reason_or_usage_is_not_taken_for_a_complete_one() -> None:
    with serving(FakeServer(omit=frozenset({"finish_reason", "usage"}))) as server:
        model = provider(server.uri())
        result = await model.generate(GenerateCall(messages=CHAT, max_tokens=20))
        await model.aclose()
    assert result.finish_reason == "" and result.input_tokens is None and result.output_tokens is None
    assert malformed(result) == "finish reason ''"  # the Limiter retries it rather than trust it


async def test_generation_is_the_servers_continuation_of_the_prefilled_answer() -> None:
    call = GenerateCall(
        messages=CHAT, prefill="Angle: I will", max_tokens=40, stop=["\n"], seed=7, frequency_penalty=1.5
    )
    with serving(FakeServer()) as server:
        model = provider(server.uri())
        result = await model.generate(call)
        await model.aclose()
        (sent,) = server.calls("/v1/chat/completions")
    expected = await DummyProvider().generate(call)  # what the model behind the server writes
    assert result.text == expected.text and result.finish_reason == expected.finish_reason
    assert sent["messages"][-1] == {"role": "assistant", "content": "Angle: I will"}
    assert sent["continue_final_message"] is True and sent["stop"] == ["\n"] and sent["seed"] == 7
    assert sent["frequency_penalty"] == 1.5
    assert result.output_tokens == expected.output_tokens


async def test_a_server_that_will_not_continue_an_answer_is_told_to_begin_with_the_prefill() -> None:
    call = GenerateCall(messages=CHAT, prefill="Angle: I will", max_tokens=40, seed=7)
    with serving(FakeServer(continues=False)) as server:
        model = provider(server.uri())
        assert "told to begin with the prefill" in await model.check("generator")
        result = await model.generate(call)
        await model.aclose()
        sent = server.calls("/v1/chat/completions")[-1]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"] and "continue_final_message" not in sent
    assert sent["messages"][-1]["content"].endswith(
        "Begin your answer with exactly this text, then go on:\nAngle: I will"
    )
    assert result.finish_reason in ("stop", "length") and (result.output_tokens or 0) > 0


async def test_scores_are_the_prompt_log_probabilities_of_the_target_tokens_only() -> None:
    call = ScoreCall(messages=CHAT, prefix="<think>\nI will keep it short.\n</think>\n", target="Test your backups.")
    with serving(FakeServer()) as server:
        model = provider(server.uri())
        result = await model.score(call)
        await model.aclose()
    context = render_chat(CHAT) + call.prefix
    assert len(result.logprobs) == len(call.target)  # one token per character on this server
    direct = DummyModel().score(context.encode(), call.target.encode())
    assert math.fsum(result.logprobs) == pytest.approx(math.fsum(direct))
    assert result.input_tokens == len(context)


async def test_the_start_check_says_what_the_server_can_do() -> None:
    with serving(FakeServer()) as server:
        model = provider(server.uri())
        assert "continues a prefilled answer" in await model.check("generator")
        assert "prompt log-probabilities by echo" in await model.check("scorer")
        with pytest.raises(ProviderConfigError, match="does not serve other; it serves fake-model"):
            await provider(server.uri().replace("fake-model", "other")).check("generator")
    with serving(FakeServer(echo=False)) as server:
        chat_only = provider(server.uri())
        assert "fake-model at " in (said := await chat_only.check("generator")) and "chat completions" in said
        with pytest.raises(ProviderConfigError, match=r"cannot be a scorer.*use it as --generator"):
            await chat_only.check("scorer")
    with pytest.raises(ProviderConfigError, match=r"cannot reach .* is the server running"):
        await provider(f"openai://127.0.0.1:{server.port}/fake-model").check("generator")


async def test_http_errors_become_retryable_or_final_provider_errors() -> None:
    failures = [Failure(429, retry_after="2.5"), Failure(503), Failure(400)]
    with serving(FakeServer(failures=failures)) as server:
        model = provider(server.uri())
        call = GenerateCall(messages=CHAT, max_tokens=5)
        errors = []
        for _ in range(3):
            with pytest.raises(ProviderError) as caught:
                await model.generate(call)
            errors.append(caught.value)
        answered = await model.generate(call)  # the failures are spent: the model behind answers
        assert (answered.finish_reason, answered.output_tokens) == ("length", 5) and len(answered.text) == 5
        await model.aclose()
    assert [(e.retryable, e.retry_after) for e in errors] == [(True, 2.5), (True, None), (False, None)]
    assert "answered 429" in str(errors[0]) and "answered 400" in str(errors[2])


async def test_the_limiter_honours_retry_after_and_ends_a_hung_call_at_its_timeout(tmp_path: Path) -> None:
    failures = [Failure(429, retry_after="0.2"), Failure(hang_s=3.0)]
    with serving(FakeServer(failures=failures)) as server:
        model = provider(server.uri())
        limits = {model.uri: LimitSettings(timeout_s=0.5, max_retries=3)}
        dead = JsonlStore(tmp_path / "dead.jsonl", DeadLetter)
        limiter = Limiter(Bus(8), dead, {"generator": [model], "scorer": [model]}, limits)
        result = await limiter.call("generator", GenerateCall(messages=CHAT, max_tokens=5, seed=1))
        await model.aclose()
        assert len(server.calls("/v1/chat/completions")) == 3  # 429, the hang, then the answer
    assert (
        isinstance(result, Generation) and result.provider == model.uri and result.finish_reason in ("stop", "length")
    )


def test_keys_come_from_a_private_file_or_the_environment_never_the_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    with pytest.raises(ProviderConfigError, match=r"readable by others.*chmod 600"):
        provider(f"openai://h:1/m?key_file={key_file}")
    key_file.chmod(0o600)
    assert provider(f"openai://h:1/m?key_file={key_file}")._headers() == {"Authorization": f"Bearer {KEY}"}
    monkeypatch.setenv("MY_KEY", KEY)
    assert provider("openai://h:1/m?key_env=MY_KEY")._headers() == {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(ProviderConfigError, match="NOT_SET named by key_env is not set"):
        provider("openai://h:1/m?key_env=NOT_SET")
    for uri in (f"openai://h:1/m?key={KEY}", f"openai://user:{KEY}@h:1/m"):
        with pytest.raises(ProviderConfigError, match="key in the URI") as caught:
            provider(uri)
        assert KEY not in str(caught.value)
    with pytest.raises(ProviderConfigError, match="expected openai://HOST:PORT/MODEL"):
        provider("openai://h:1")


async def test_a_refused_key_is_not_quoted_back_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_KEY", KEY)
    with serving(FakeServer(key="sk-the-right-one")) as server:
        model = provider(server.uri(key_env="WRONG_KEY"))
        with pytest.raises(ProviderError) as caught:
            await model.generate(GenerateCall(messages=CHAT, max_tokens=5))
        await model.aclose()
    assert "answered 401" in str(caught.value) and not caught.value.retryable
    assert KEY not in str(caught.value) and KEY[3:20] not in str(caught.value)


async def test_the_start_check_makes_a_real_chat_call_so_a_key_refused_only_there_fails_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that lists its models to anyone, but answers 401 to chat calls with this key."""
    monkeypatch.setenv("WRONG_KEY", KEY)
    with serving(FakeServer(key="sk-the-right-one", public_models=True)) as server:
        model = provider(server.uri(key_env="WRONG_KEY"))
        with pytest.raises(ProviderConfigError, match=r"a trial chat completion failed: .*answered 401"):
            await model.check("generator")
        await model.aclose()


def test_the_daemon_mines_with_a_server_generator_and_scorer(tmp_path: Path, run_daemon: RunDaemon) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(12)))
    with serving(FakeServer(key=KEY)) as server:
        uri = server.uri(key_file=str(key_file))
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--provider", uri)
        chats, scores = server.calls("/v1/chat/completions"), server.calls("/v1/completions")
    assert done.returncode == 0, done.stderr
    assert f"scorer {uri}: fake-model" in done.stderr and "prompt log-probabilities by echo" in done.stderr
    traces = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    assert traces and all(t["generators"] == [uri] and t["scorers"] == [uri] for t in traces)
    # the start check makes one trial chat, and four completions to check the scorer's numbers
    assert len(chats) == 1 + sum(t["timings"]["generate_calls"] for t in traces)
    assert len(scores) == 4 + sum(t["timings"]["score_calls"] for t in traces)


def test_a_scorer_that_cannot_score_is_refused_at_start(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text(post_line(1) + "\n")
    with serving(FakeServer(echo=False)) as server:
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--scorer", server.uri())
        assert server.calls("/v1/chat/completions") == []
        checked = run_daemon("validate", env={"REER_GENERATOR": server.uri(), "REER_SCORER": server.uri()})
    assert checked.returncode == 1
    assert f"ok       {server.uri()} as generator: fake-model" in checked.stdout
    assert f"PROBLEM  {server.uri()} cannot be a scorer" in checked.stdout
    assert done.returncode == 2
    assert "cannot be a scorer" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "posts.jsonl").exists()  # refused before reading any input


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        (
            "shifted",
            r"the log-probabilities it echoes for .* differ by up to \d\.\d\d nats from those it gave",
        ),
        ("constant", r"a natural text scores 5\.00 nats a token and the same words shuffled 5\.00"),
    ],
)
async def test_a_scorer_whose_log_probabilities_are_wrong_is_refused(fault: str, why: str) -> None:
    with serving(FakeServer(echo_fault=fault)) as server:  # type: ignore[arg-type]
        model = provider(server.uri())
        with pytest.raises(
            ProviderConfigError, match=f"cannot be a scorer: its prompt log-probabilities are wrong: {why}"
        ):
            await model.check("scorer")
        assert await model.check("generator")  # it can still write plans
    with serving(FakeServer()) as server:  # the same server with right numbers passes every check
        found = await provider(server.uri()).check("scorer")
    assert "natural 1.52 < shuffled 1.95 nats a token; echo agrees with generation" in found


def test_the_daemon_and_validate_refuse_a_scorer_with_misaligned_log_probabilities(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text(post_line(1) + "\n")
    with serving(FakeServer(echo_fault="shifted")) as server:
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--scorer", server.uri())
        checked = run_daemon("validate", env={"REER_SCORER": server.uri()})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "its prompt log-probabilities are wrong" in done.stderr and "misaligned or wrong echo" in done.stderr
    assert checked.returncode == 1
    assert f"PROBLEM  {server.uri()} cannot be a scorer: its prompt log-probabilities are wrong" in checked.stdout
    assert not (tmp_path / "data" / "posts.jsonl").exists()


@pytest.mark.parametrize("template_api", ["vllm", "llama.cpp"])
async def test_one_model_gives_the_same_scores_through_mlx_and_a_server(tiny: Path, template_api: str) -> None:
    from runtime.providers.local.provider import LocalProvider

    calls = [
        ScoreCall(
            messages=CHAT, prefix="<think>\nI will open with the result.\n</think>\n<answer>\n", target="We shipped."
        ),
        ScoreCall(
            messages=CHAT, prefix="<think>\nI will ask.\n</think>\n<answer>\n", target="Signups doubled in a week."
        ),
    ]
    local = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    with serving(FakeServer(model_dir=tiny, template_api=template_api)) as server:  # type: ignore[arg-type]
        remote = provider(server.uri())
        for call in calls:
            here, there = await local.score(call), await remote.score(call)
            assert there.logprobs == pytest.approx(here.logprobs, abs=1e-4)
            assert there.input_tokens == here.input_tokens - len(here.logprobs)
        await remote.aclose()
        scored = server.calls("/v1/completions")
    await local.aclose()
    assert remote.template == template_api
    # the chat was rendered by the model's template, as mlx:// renders it, not as plain <|role|> text
    assert all(body["prompt"].startswith("<|im_start|>system\nYou write plans.<|im_end|>") for body in scored)
    assert (
        server.calls("/tokenize" if template_api == "vllm" else "/apply-template")[0]["messages"][0]["role"] == "system"
    )


def test_a_template_that_opens_a_think_block_does_not_get_a_second_one() -> None:
    answer = "<think>\nI will open with the result.\n</think>\n<answer>\n"
    r1_style = "<|im_start|>user\nBrief<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert continue_with(r1_style, answer) == "<|im_start|>user\nBrief<|im_end|>\n<|im_start|>assistant\n" + answer
    plain = "<|im_start|>user\nBrief<|im_end|>\n<|im_start|>assistant\n"
    assert continue_with(plain, answer) == plain + answer
    assert continue_with(r1_style, "Angle: I will") == r1_style + "Angle: I will"  # only a think block is merged


def mock(
    answer: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]], seen: list[tuple[str, dict[str, Any]]]
) -> OpenAIProvider:
    """A `OpenAIProvider` whose HTTP goes to `answer(path, body)` in process (`httpx.MockTransport`)."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        seen.append((request.url.path, body))
        status, payload = answer(request.url.path, body)
        return httpx.Response(status, json=payload)

    return OpenAIProvider("openai://mock/m", "http://mock/v1", "m", None, transport=httpx.MockTransport(handle))


async def test_a_refusal_to_continue_an_answer_is_learnt_from_the_first_prefilled_request() -> None:
    def answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("continue_final_message"):
            return 400, {"error": {"message": "Unrecognized request argument: continue_final_message"}}
        return 200, {"choices": [{"message": {"content": " begin."}, "finish_reason": "stop"}]}

    seen: list[tuple[str, dict[str, Any]]] = []
    model = mock(answer, seen)
    call = GenerateCall(messages=CHAT, prefill="Angle: I will", max_tokens=8)
    first, second = await model.generate(call), await model.generate(call)
    await model.aclose()
    assert first.text == second.text == " begin." and model.continues is False
    # the refused request, its retry asking to begin with the prefill, then only the latter
    assert [bool(b.get("continue_final_message")) for _, b in seen] == [True, False, False]
    assert seen[-1][1]["messages"][-1]["content"].endswith("then go on:\nAngle: I will")


async def test_a_chat_is_rendered_by_the_servers_template_once_and_scored_as_rendered() -> None:
    rendered = "<|im_start|>user\nPlan a post about backups.<|im_end|>\n<|im_start|>assistant\n"

    def answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/tokenize":
            return 200, {"tokens": [1, 2, 3]}
        if path == "/detokenize":
            return 200, {"prompt": rendered}
        prompt = body["prompt"]  # /v1/completions with echo: one token per character
        logprobs = {
            "tokens": list(prompt),
            "text_offset": list(range(len(prompt))),
            "token_logprobs": [None] + [-i / 1000 for i in range(1, len(prompt))],  # each position its own
        }
        return 200, {"choices": [{"logprobs": logprobs}]}

    seen: list[tuple[str, dict[str, Any]]] = []
    model = mock(answer, seen)
    for target in ("Test your backups.", "Restore one file today."):
        scored = await model.score(ScoreCall(messages=CHAT, prefix="<think>\n</think>\n", target=target))
        start = len(rendered + "<think>\n</think>\n")  # the target's characters, and no other
        assert scored.logprobs == [-i / 1000 for i in range(start, start + len(target))]
    await model.aclose()
    assert [path for path, _ in seen] == ["/tokenize", "/detokenize", "/v1/completions", "/v1/completions"]
    assert seen[0][1]["messages"][0] == {"role": "system", "content": "You write plans."}
    assert all(b["prompt"].startswith(rendered + "<think>") and b["add_special_tokens"] is False for _, b in seen[2:])
