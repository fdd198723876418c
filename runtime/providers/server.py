"""`openai://HOST:PORT/MODEL`: a model behind an OpenAI-compatible HTTP server (vLLM, llama.cpp, LM Studio).

Generation uses `/v1/chat/completions`; a prefilled answer is sent as a final assistant message to
be continued (vLLM's `continue_final_message`; llama.cpp's server continues it by itself). A server
that refuses that (OpenAI's own API) is found at start and asked instead, in the last user message,
to begin its answer with the prefill. Scoring
uses `/v1/completions` with `echo` and `logprobs`, which returns the prompt's log-probabilities;
chat APIs such as OpenAI's own do not, so such a server can only be a generator. The chat of a
score call is rendered as plain text (`render_chat`): a scorer is typically a base model.

Options: `tls=1` (https), `key_env=NAME` (the variable holding the API key; default
`OPENAI_API_KEY` when set) or `key_file=PATH` (a file readable by its owner only).
Keys are never part of the URI, so they never reach logs, spans or stores.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bus.messages import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.base import (
    ProviderConfigError,
    ProviderError,
    chat_messages,
    continue_with,
    render_chat,
    without_prefill,
)

OPTIONS = ("tls", "key_env", "key_file")
RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
PROBE = ("The quick brown", " fox jumps over the lazy dog")
PROBE_CALL = GenerateCall(messages=[ChatMessage("user", "Say hello.")], prefill="Hello", max_tokens=1)


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


class ServerProvider:
    """The provider behind `openai://`."""

    system = "openai"

    def __init__(self, uri: str, base_url: str, model: str, key: str | None) -> None:
        self.uri = uri
        self.model = model
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.address: tuple[str, int] | None = (parts.hostname or "", port)
        self.base_url = base_url
        self._key = key
        self._client: httpx.AsyncClient | None = None
        self.continues = True
        """Whether the server continues a final assistant message; found by `check`."""

    @classmethod
    def from_uri(cls, uri: str) -> ServerProvider:
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
        if self._key:
            for size in range(len(self._key), 5, -1):
                for start in range(len(self._key) - size + 1):
                    if (piece := self._key[start : start + size]) in text:
                        text = text.replace(piece, "***")
        return text

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await client.post(f"{self.base_url}{path}", json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"cannot reach {self.base_url}: {self._scrub(str(exc)) or type(exc).__name__}", retryable=True
            ) from None
        if response.status_code >= 400:
            retry_after = response.headers.get("retry-after")
            raise ProviderError(
                f"{path} answered {response.status_code}: {self._scrub(response.text[:300])}",
                retryable=response.status_code in RETRYABLE,
                retry_after=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
            )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise ProviderError(f"{path} answered with something other than JSON", retryable=True) from None
        return data

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=None)  # the Limiter's timeout bounds every call
        return self._client

    async def check(self, role: Role) -> str:
        async with httpx.AsyncClient(timeout=30) as client:
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
                    await self._post(client, "/chat/completions", self._chat_body(PROBE_CALL))
                except ProviderError as exc:
                    if exc.retryable:
                        raise ProviderConfigError(f"{self.uri}: a trial chat completion failed: {exc}") from None
                    self.continues = False
                how = "continues a prefilled answer" if self.continues else "told to begin with the prefill"
                return f"{self.model} at {self.base_url}: chat completions ({how})"
            try:
                scores, _ = await self._score(client, *PROBE)
            except ProviderError as exc:
                scores, why = [], str(exc)
            else:
                why = "no log-probabilities for the prompt"
            if len(scores) < 2:
                raise ProviderConfigError(
                    f"{self.uri} cannot be a scorer: the server gives no prompt log-probabilities ({why}). Chat APIs "
                    "(OpenAI's among them) do not; use it as --generator and score with mlx://... or a vLLM server."
                )
        return f"{self.model} at {self.base_url}: prompt log-probabilities by echo"

    async def _score(self, client: httpx.AsyncClient, context: str, target: str) -> tuple[list[float], int]:
        """Log-probabilities of the tokens that end after `context` in `context + target`, and the
        number of tokens before them."""
        body = {
            "model": self.model,
            "prompt": context + target,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 0,
            "temperature": 0,
        }
        data = await self._post(client, "/completions", body)
        try:
            logprobs = data["choices"][0]["logprobs"]
            tokens, offsets, values = logprobs["tokens"], logprobs["text_offset"], logprobs["token_logprobs"]
            prompt_end = len(context + target)
            chosen = [
                v
                for t, o, v in zip(tokens, offsets, values, strict=True)
                if len(context) < o + len(t) and o < prompt_end
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"/completions answered without prompt log-probabilities ({exc!r})", retryable=False
            ) from None
        if any(v is None for v in chosen):
            raise ProviderError("/completions gave no log-probability for a scored token", retryable=True)
        return [float(v) for v in chosen], sum(o + len(t) <= len(context) for t, o in zip(tokens, offsets, strict=True))

    def _chat_body(self, call: GenerateCall) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "top_p": call.top_p,
        }
        if call.stop:
            body["stop"] = call.stop
        if call.seed is not None:
            body["seed"] = call.seed
        if call.prefill and self.continues:
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return {**body, "messages": chat_messages(call, continues=self.continues)}

    async def generate(self, call: GenerateCall) -> Generation:
        data = await self._post(self._http(), "/chat/completions", self._chat_body(call))
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"/chat/completions answered without a message ({exc!r})", retryable=True) from None
        return Generation(
            text=without_prefill(text, call.prefill),  # some servers return the whole message
            input_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
            finish_reason=choice.get("finish_reason") or "",
            provider=self.uri,
        )

    async def score(self, call: ScoreCall) -> TokenScores:
        context = continue_with(render_chat(call.messages), call.prefix)
        logprobs, context_tokens = await self._score(self._http(), context, call.target)
        return TokenScores(logprobs=logprobs, input_tokens=context_tokens, provider=self.uri)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _count(value: object) -> int | None:
    """A token count from a server's `usage`, or None when it gave none."""
    return int(value) if isinstance(value, int | float) else None
