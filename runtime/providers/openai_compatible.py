"""`openai://HOST:PORT/MODEL`: a model behind an OpenAI-compatible HTTP server (vLLM, llama.cpp, LM Studio).

Generation uses `/v1/chat/completions`; a prefilled answer is sent as a final assistant message to
be continued (vLLM's `continue_final_message`; llama.cpp's server continues it by itself). A server
that refuses that (OpenAI's own API) is found on the first such request (or by `check`) and asked
instead, in the last user message, to begin its answer with the prefill.

Scoring uses `/v1/completions` with `echo` and `logprobs`, which returns the prompt's
log-probabilities; chat APIs such as OpenAI's own do not, so such a server can only be a generator.
The chat of a score call is rendered with the model's own chat template, as `mlx://` does, by the
server: vLLM's `/tokenize` and `/detokenize`, or llama.cpp's `/apply-template`. A server with
neither gets plain `<|role|>` text (`render_chat`), and its check line says so.

Servers' prompt log-probabilities are often wrong (misaligned, or all alike), so a scorer is checked
at start on numbers, not only shape (`check_scores`): one log-probability per token with offsets
that rebuild the text, a natural text scoring clearly better than the same words shuffled, and the
echo agreeing with a second path, the log-probabilities of the tokens the server generates itself.

Options: `tls=1` (https), `key_env=NAME` (the variable holding the API key; default
`OPENAI_API_KEY` when set) or `key_file=PATH` (a file readable by its owner only).
Keys are never part of the URI, so they never reach logs, spans or stores.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from runtime.errors import (
    MalformedAnswer,
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    ProviderTimeout,
    RateLimited,
    ServerFailed,
)
from runtime.providers.base import Description, chat_messages, continue_with, render_chat, without_prefill
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.redact import scrub

OPTIONS = ("tls", "key_env", "key_file")
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


def http_failure(status: int) -> type[ProviderError]:
    """The kind of failure an HTTP error status is (whether it is retried is `RETRYABLE`'s call)."""
    if status == 429:
        return RateLimited
    if status == 408:
        return ProviderTimeout
    return ServerFailed if status >= 500 else ProviderRefused


PROBE_CALL = GenerateCall(messages=[ChatMessage("user", "Say hello.")], prefill="Hello", max_tokens=1)
PROBE_SENTENCE = "Thank you to everyone who voted today. Together we can build a better future for our children."
PROBE_TEXT = f"{PROBE_SENTENCE} {PROBE_SENTENCE}"
"""Natural text a model finds easy, all the more the second time: its words shuffled are far harder."""
PROBE_PROMPT = "Thank you to everyone who voted today. Together we can"
SHUFFLED_MARGIN = 1.15
"""A scorer must find the shuffled words at least this many times harder (mean NLL) than the text:
real models give about 3x; wrong log-probabilities that ignore the text give 1x."""
SECOND_PATH_TOLERANCE = 0.25
"""Largest difference, in nats, between a generated token's log-probability and its echo."""
RENDER_CACHE = 256
"""Rendered chats kept: all of a post's scoring calls share one."""


def read_key(uri: str, key_env: str | None, key_file: str | None) -> str | None:
    """The API key from `key_file` (which must be private to its owner) or the environment."""
    if key_file:
        path = Path(key_file).expanduser()
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ProviderConfigError(
                    f"{uri}: key file {path} is readable by others (mode {stat.filemode(mode)}); run chmod 600 {path}"
                )
            return path.read_text().strip()
        except OSError as exc:
            raise ProviderConfigError(f"{uri}: cannot read key file {path}: {exc.strerror}") from None
    if key_env:
        if key_env not in os.environ:
            raise ProviderConfigError(f"{uri}: the variable {key_env} named by key_env is not set")
        return os.environ[key_env]
    return os.environ.get("OPENAI_API_KEY")


class OpenAIProvider:
    """The provider behind `openai://`."""

    system = "openai"

    def __init__(
        self, uri: str, base_url: str, model: str, key: str | None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """`transport` replaces the network, as `httpx.MockTransport` does in the protocol tests."""
        self.uri = uri
        self.model = model
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.address: tuple[str, int] | None = (parts.hostname or "", port)
        self.capacity: int | None = None
        self.base_url = base_url
        self._key = key
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.continues: bool | None = None
        """Whether the server continues a final assistant message; found by one trial on first need."""
        self.root_url = base_url.removesuffix("/v1")
        self.template: str | None = None
        """How the server renders a chat with the model's template ("vllm", "llama.cpp"), "" for
        none (plain text); found on first need."""
        self._rendered: dict[tuple[tuple[str, str], ...], str] = {}

    @classmethod
    def open(cls, uri: str, data_dir: Path) -> OpenAIProvider:
        parts = urlsplit(uri)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if "key" in query or "api_key" in query or parts.password or parts.username:
            raise ProviderConfigError(
                f"{parts.scheme}://{parts.hostname}: a key in the URI would end up in logs; "
                "put it in an environment variable (key_env=NAME) or a private file (key_file=PATH)"
            )
        unknown = set(query) - set(OPTIONS)
        if unknown:
            raise ProviderConfigError(
                f"unknown option(s) in {uri!r}: {', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}"
            )
        model = parts.path.strip("/")
        if not parts.netloc or not model:
            raise ProviderConfigError(
                f"{uri!r}: expected openai://HOST:PORT/MODEL, e.g. openai://localhost:8000/Qwen/Qwen3-8B"
            )
        scheme = "https" if query.get("tls") in ("1", "true", "yes") else "http"
        key = read_key(uri, query.get("key_env"), query.get("key_file"))
        return cls(uri, f"{scheme}://{parts.netloc}/v1", model, key)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def _scrub(self, text: str) -> str:
        """`text` without the key or any long piece of it (servers quote keys in their errors)."""
        return scrub(text, [self._key] if self._key else [])

    async def _post(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any], *, root: bool = False
    ) -> dict[str, Any]:
        """POST to the API (`/v1/...`), or with `root` to the server's own routes (`/tokenize`)."""
        base = self.root_url if root else self.base_url
        try:
            response = await client.post(f"{base}{path}", json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise ServerFailed(f"cannot reach {self.base_url}: {self._scrub(str(exc)) or type(exc).__name__}") from None
        if response.status_code >= 400:
            retry_after = response.headers.get("retry-after")
            raise http_failure(response.status_code)(
                f"{path} answered {response.status_code}: {self._scrub(response.text[:300])}",
                retryable=response.status_code in RETRYABLE,
                retry_after=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
            )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise MalformedAnswer(f"{path} answered with something other than JSON") from None
        return data

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # the Limiter's timeout bounds every call
            self._client = httpx.AsyncClient(timeout=None, transport=self._transport)
        return self._client

    async def _continuing(self, client: httpx.AsyncClient) -> bool:
        """Whether the server continues a final assistant message: known from the first prefilled
        generation, or one trial. A server that refuses the request (OpenAI's API) is asked instead
        to begin with the prefill, and that trial must succeed: a refused key fails here, not on
        every post later."""
        if self.continues is None:
            try:
                await self._post(client, "/chat/completions", self._chat_body(PROBE_CALL, continues=True))
            except ProviderError as exc:
                if exc.retryable:
                    raise
                await self._post(client, "/chat/completions", self._chat_body(PROBE_CALL, continues=False))
                self.continues = False
            else:
                self.continues = True
        return self.continues

    async def check(self, role: Role) -> str:
        async with httpx.AsyncClient(timeout=30, transport=self._transport) as client:
            try:
                response = await client.get(f"{self.base_url}/models", headers=self._headers())
            except httpx.HTTPError as exc:
                raise ProviderConfigError(
                    f"{self.uri}: cannot reach {self.base_url} ({exc}); is the server running?"
                ) from None
            if response.status_code in (401, 403):
                raise ProviderConfigError(f"{self.uri}: the server refused the key ({response.status_code})")
            if response.status_code == 200:
                served = [m.get("id") for m in response.json().get("data", [])]
                if served and self.model not in served:
                    raise ProviderConfigError(
                        f"{self.uri}: the server does not serve {self.model}; it serves {', '.join(map(str, served))}"
                    )
            if role == "generator":
                try:
                    continues = await self._continuing(client)
                except ProviderError as exc:
                    raise ProviderConfigError(f"{self.uri}: a trial chat completion failed: {exc}") from None
                how = "continues a prefilled answer" if continues else "told to begin with the prefill"
                return f"{self.model} at {self.base_url}: chat completions ({how})"
            try:
                found = await self.check_scores(client)
            except ProviderError as exc:
                raise ProviderConfigError(
                    f"{self.uri} cannot be a scorer: the server gives no prompt log-probabilities ({exc}). Chat APIs "
                    "(OpenAI's among them) do not; use it as --generator and score with mlx://... or a vLLM server."
                ) from None
            await self._chat_text(client, PROBE_CALL.messages)
        template = {"vllm": "vLLM's /tokenize", "llama.cpp": "llama.cpp's /apply-template"}.get(self.template or "")
        how = f"the model's chat template from {template}" if template else "plain-text chats (no template served)"
        return f"{self.model} at {self.base_url}: prompt log-probabilities by echo ({found}); {how}"

    def describe(self) -> Description:
        return Description()  # the server knows its own device; `check` says what it can do

    async def check_scores(self, client: httpx.AsyncClient) -> str:
        """Make sure the echoed log-probabilities are right, not only there: what was checked.

        Raises `ProviderConfigError` naming the check that failed, `ProviderError` when the server
        gives no prompt log-probabilities at all."""
        tokens = await self._echo(client, PROBE_TEXT)
        if "".join(t for t, _, _ in tokens) != PROBE_TEXT or any(
            o != sum(len(t) for t, _, _ in tokens[:i]) for i, (_, o, _) in enumerate(tokens)
        ):
            raise self._refused("its tokens and their offsets do not rebuild the text they score")
        natural = _mean_nll([v for _, _, v in tokens[1:]])
        words = PROBE_TEXT.split()
        random.Random(0).shuffle(words)
        shuffled = _mean_nll([v for _, _, v in (await self._echo(client, " ".join(words)))[1:]])
        if shuffled < natural * SHUFFLED_MARGIN + 0.05:
            raise self._refused(
                f"a natural text scores {natural:.2f} nats a token and the same words shuffled {shuffled:.2f}; "
                "a real model finds the shuffled words far harder"
            )
        generated = await self._generated_logprobs(client, PROBE_PROMPT)
        if not generated:
            return f"natural {natural:.2f} < shuffled {shuffled:.2f} nats a token; no second path to compare"
        text = PROBE_PROMPT + "".join(t for t, _ in generated)
        echoed = [(t, v) for t, o, v in await self._echo(client, text) if o >= len(PROBE_PROMPT)]
        if [t for t, _ in echoed] == [t for t, _ in generated]:
            gap = max(abs(float(v or 0.0) - g) for (_, v), (_, g) in zip(echoed, generated, strict=True))
        else:  # the text tokenized differently on the way back: compare the totals
            gap = abs(sum(float(v or 0.0) for _, v in echoed) - sum(g for _, g in generated)) / len(generated)
        if gap > SECOND_PATH_TOLERANCE:
            raise self._refused(
                f"the log-probabilities it echoes for {text[len(PROBE_PROMPT) :]!r} differ by up to {gap:.2f} nats "
                "from those it gave when it generated the same tokens (misaligned or wrong echo)"
            )
        return f"natural {natural:.2f} < shuffled {shuffled:.2f} nats a token; echo agrees with generation"

    def _refused(self, why: str) -> ProviderConfigError:
        return ProviderConfigError(
            f"{self.uri} cannot be a scorer: its prompt log-probabilities are wrong: {why}. Known causes: "
            "llama-cpp-python's echo (abetlen/llama-cpp-python#1983); score with mlx://... or a vLLM server instead"
        )

    async def _echo(self, client: httpx.AsyncClient, prompt: str) -> list[tuple[str, int, float | None]]:
        """The prompt's tokens with their offsets and log-probabilities (None for the first)."""
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 0}
        if self.template:  # the rendered template holds the special tokens it wants (vLLM's option)
            body["add_special_tokens"] = False
        data = await self._post(client, "/completions", {**body, "temperature": 0})
        try:
            logprobs = data["choices"][0]["logprobs"]
            rows = zip(logprobs["tokens"], logprobs["text_offset"], logprobs["token_logprobs"], strict=True)
            return [(str(t), int(o), None if v is None else float(v)) for t, o, v in rows if o < len(prompt)]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ProviderRefused(f"/completions answered without prompt log-probabilities ({exc!r})") from None

    async def _generated_logprobs(self, client: httpx.AsyncClient, prompt: str) -> list[tuple[str, float]]:
        """The tokens the server generates greedily after `prompt`, with their log-probabilities
        (empty when it gives none)."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 1}
        try:
            logprobs = (await self._post(client, "/completions", body))["choices"][0]["logprobs"]
            return [(str(t), float(v)) for t, v in zip(logprobs["tokens"], logprobs["token_logprobs"], strict=True)]
        except (ProviderError, KeyError, IndexError, TypeError, ValueError):
            return []

    async def _chat_text(self, client: httpx.AsyncClient, messages: list[ChatMessage]) -> str:
        """The chat rendered as prompt text by the server's chat template, ending where the
        assistant's answer starts; plain text when the server renders none."""
        key = tuple((m.role, m.content) for m in messages)
        if (text := self._rendered.get(key)) is not None:
            return text
        turns = [{"role": m.role, "content": m.content} for m in messages]
        tried = ("vllm", "llama.cpp") if self.template is None else (self.template,)  # "" once none answered
        for template in filter(None, tried):
            try:
                text = await self._render(client, template, turns)
            except (ProviderError, KeyError, TypeError):
                if self.template is not None:  # it rendered before: this failure is the call's
                    raise
                continue
            self.template = template
            break
        if text is None:
            self.template = ""
            text = render_chat(messages)
        if len(self._rendered) >= RENDER_CACHE:
            self._rendered.pop(next(iter(self._rendered)))
        self._rendered[key] = text
        return text

    async def _render(self, client: httpx.AsyncClient, template: str, turns: list[dict[str, str]]) -> str:
        """The chat rendered by the server's routes for `template`: vLLM's `/tokenize` then
        `/detokenize`, or llama.cpp's `/apply-template`."""
        if template == "vllm":
            tokenize = {
                "model": self.model,
                "messages": turns,
                "add_generation_prompt": True,
                "add_special_tokens": False,
            }
            tokens = (await self._post(client, "/tokenize", tokenize, root=True))["tokens"]
            detokenize = {"model": self.model, "tokens": tokens}
            return str((await self._post(client, "/detokenize", detokenize, root=True))["prompt"])
        return str((await self._post(client, "/apply-template", {"messages": turns}, root=True))["prompt"])

    async def _score(self, client: httpx.AsyncClient, context: str, target: str) -> tuple[list[float], int]:
        """Log-probabilities of the tokens that end after `context` in `context + target`, and the
        number of tokens before them."""
        tokens = await self._echo(client, context + target)
        chosen = [v for t, o, v in tokens if len(context) < o + len(t)]
        if any(v is None for v in chosen):
            raise MalformedAnswer("/completions gave no log-probability for a scored token")
        return [float(v) for v in chosen if v is not None], len(tokens) - len(chosen)

    def _chat_body(self, call: GenerateCall, *, continues: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "top_p": call.top_p,
        }
        if call.frequency_penalty:
            body["frequency_penalty"] = call.frequency_penalty
        if call.stop:
            body["stop"] = call.stop
        if call.seed is not None:
            body["seed"] = call.seed
        if call.prefill and continues:
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return {**body, "messages": chat_messages(call, continues=continues)}

    async def generate(self, call: GenerateCall) -> Generation:
        client = self._http()
        continues = bool(call.prefill) and self.continues is not False
        try:
            data = await self._post(client, "/chat/completions", self._chat_body(call, continues=continues))
        except ProviderError as exc:
            if not continues or self.continues is not None or exc.retryable:
                raise
            self.continues = False  # it refuses to continue an answer: ask it to begin with the prefill
            data = await self._post(client, "/chat/completions", self._chat_body(call, continues=False))
        else:
            self.continues = True if continues else self.continues
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise MalformedAnswer(f"/chat/completions answered without a message ({exc!r})") from None
        return Generation(
            text=without_prefill(text, call.prefill),  # some servers return the whole message
            input_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
            finish_reason=choice.get("finish_reason") or "",
            provider=self.uri,
        )

    async def score(self, call: ScoreCall) -> TokenScores:
        client = self._http()
        context = continue_with(await self._chat_text(client, call.messages), call.prefix)
        logprobs, context_tokens = await self._score(client, context, call.target)
        return TokenScores(logprobs=logprobs, input_tokens=context_tokens, provider=self.uri)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _mean_nll(logprobs: list[float | None]) -> float:
    """Mean negative log-probability of the tokens that have one."""
    values = [v for v in logprobs if v is not None]
    return -sum(values) / len(values) if values else 0.0


def _count(value: object) -> int | None:
    """A token count from a server's `usage`, or None when it gave none."""
    return int(value) if isinstance(value, int | float) else None
