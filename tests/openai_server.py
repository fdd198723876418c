"""A small OpenAI-compatible server on loopback, for tests and benchmarks of `openai://`.

It speaks `/v1/models`, `/v1/chat/completions` and `/v1/completions` (with `echo` and `logprobs`,
or greedy generation with `logprobs`), with honest numbers: chat generation comes from a real
provider (`dummy://` unless given another), and completions from the `dummy://` n-gram model, one
token per character. Given an mlx-lm model folder (`model_dir`), completions come from that model
instead, with its tokenizer, and the server renders chats with its chat template as vLLM does
(`/tokenize`, `/detokenize`) or as llama.cpp does (`/apply-template`).

It can demand a key (and, like real servers, quote the wrong key back in its 401), refuse to echo,
echo wrong log-probabilities (`echo_fault`: shifted by one token, or all alike), and serve scripted
failures (status, `Retry-After`, or a hang) to the next requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from runtime.providers.base import Provider
from runtime.providers.calls import ChatMessage, GenerateCall
from runtime.providers.dummy import DummyModel, DummyProvider


@dataclass
class Failure:
    """What the server answers instead of the next request: a status, or a hang of `hang_s`."""

    status: int = 503
    retry_after: str | None = None
    hang_s: float = 0.0


@dataclass
class FakeServer:
    model: str = "fake-model"
    key: str | None = None
    public_models: bool = False
    """List models without asking for the key (so a bad key passes the start check and fails later)."""
    echo: bool = True
    continues: bool = True
    """Whether it continues a final assistant message; if not, it refuses the request as OpenAI does."""
    generator: Provider = field(default_factory=DummyProvider)
    failures: list[Failure] = field(default_factory=list)
    omit: frozenset[str] = frozenset()
    """Fields left out of chat answers ("finish_reason", "usage"), as some servers do."""
    echo_fault: Literal["", "shifted", "constant"] = ""
    """Echo wrong prompt log-probabilities: each token given the next one's (as llama-cpp-python's
    echo does), or the same value for every token."""
    model_dir: Path | None = None
    """An mlx-lm model folder whose model and tokenizer serve completions and chat templates."""
    template_api: Literal["vllm", "llama.cpp"] = "vllm"
    """Which server's routes render chats (only with `model_dir`)."""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scorer: DummyModel = field(default_factory=DummyModel)
    _mlx: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))
    """MLX work runs on one thread of its own, as in the `mlx://` provider."""
    _loaded: Any = None

    def uri(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"openai://127.0.0.1:{self.port}/{self.model}" + (f"?{query}" if query else "")

    def calls(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.requests if p == path]

    def answer(self, path: str, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        """The status, headers and JSON body for one request."""
        with self._lock:
            self.requests.append((path, body))
            failure = self.failures.pop(0) if self.failures and path != "/v1/models" else None
        needs_key = self.key is not None and not (self.public_models and path == "/v1/models")
        if needs_key and auth != f"Bearer {self.key}":
            given = (auth or "").removeprefix("Bearer ")
            return 401, {}, {"error": {"message": f"Incorrect API key provided: {given}", "code": "invalid_api_key"}}
        if failure is not None:
            if failure.hang_s:
                time.sleep(failure.hang_s)
            else:
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return failure.status, headers, {"error": {"message": f"injected {failure.status}"}}
        if path == "/v1/models":
            return 200, {}, {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        routes = {"vllm": ("/tokenize", "/detokenize"), "llama.cpp": ("/apply-template",)}[self.template_api]
        if self.model_dir is not None and path in routes:
            return 200, {}, self._on_model(lambda _, tok: _render(tok, path, body))
        if body.get("model") != self.model:
            return 404, {}, {"error": {"message": f"model {body.get('model')!r} not found"}}
        if path == "/v1/chat/completions":
            if body.get("continue_final_message") and not self.continues:
                return 400, {}, {"error": {"message": "Unrecognized request argument: continue_final_message"}}
            return 200, {}, self._chat(body)
        if path == "/v1/completions":
            if not body.get("echo"):
                return 200, {}, self._complete(body["prompt"], int(body.get("max_tokens") or 16))
            if not self.echo:
                return 400, {}, {"error": {"message": "echo is not supported"}}
            return 200, {}, self._echo(body["prompt"], add_special=body.get("add_special_tokens", True))
        return 404, {}, {"error": {"message": f"no route {path}"}}

    def _on_model(self, work: Any) -> Any:
        """`work(model, tokenizer)` on the MLX thread, the model loaded on first use."""

        def run() -> Any:
            if self._loaded is None:
                from mlx_lm import load

                self._loaded = load(str(self.model_dir))[:2]
            return work(*self._loaded)

        return self._mlx.submit(run).result()

    def _prompt_logprobs(self, prompt: str, add_special: bool) -> tuple[list[str], list[float | None]]:
        """The prompt's tokens as text and each one's log-probability after those before it."""
        if self.model_dir is None:
            per_byte = self._scorer.score(b"", prompt.encode())
            pieces, values, position = [], [], 0
            for index, char in enumerate(prompt):
                size = len(char.encode())
                pieces.append(char)
                values.append(None if index == 0 else sum(per_byte[position : position + size]))
                position += size
            return pieces, values

        def run(model: Any, tok: Any) -> tuple[list[str], list[float | None]]:
            import mlx.core as mx

            ids = tok.encode(prompt, add_special_tokens=add_special)
            logits = model(mx.array([ids]))[0].astype(mx.float32)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            texts = [tok.decode(ids[: i + 1]) for i in range(len(ids))]
            pieces = [text[len(texts[i - 1]) if i else 0 :] for i, text in enumerate(texts)]
            return pieces, [None, *(logprobs[i - 1, ids[i]].item() for i in range(1, len(ids)))]

        result: tuple[list[str], list[float | None]] = self._on_model(run)
        return result

    def _complete(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """Greedy generation after `prompt`, with each generated token's log-probability."""
        if self.model_dir is None:
            rng = random.Random(0)
            data, _ = self._scorer.generate(
                prompt.encode(), max_tokens=max_tokens, temperature=0, top_p=1, stop=[], rng=rng
            )
            text = data.decode("utf-8", errors="ignore")
        else:
            text = ""
            for _ in range(max_tokens):  # one token at a time, the most likely each time
                text += self._on_model(lambda model, tok, text=text: _greedy_token(model, tok, prompt + text))
        pieces, values = self._prompt_logprobs(prompt + text, add_special=True)
        offsets = [sum(map(len, pieces[:i])) for i in range(len(pieces))]
        generated = [(t, v) for t, o, v in zip(pieces, offsets, values, strict=True) if o >= len(prompt)]
        logprobs = {"tokens": [t for t, _ in generated], "token_logprobs": [v for _, v in generated]}
        choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": logprobs}
        return {"object": "text_completion", "model": self.model, "choices": [choice]}

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = list(body["messages"])
        prefill = ""
        if body.get("continue_final_message") and messages[-1]["role"] == "assistant":
            prefill = messages.pop()["content"]
        call = GenerateCall(
            messages=[ChatMessage(m["role"], m["content"]) for m in messages],
            prefill=prefill,
            max_tokens=body.get("max_tokens") or body.get("max_completion_tokens", 256),
            temperature=body.get("temperature", 1.0),
            top_p=body.get("top_p", 1.0),
            frequency_penalty=body.get("frequency_penalty", 0.0),
            stop=body.get("stop") or [],
            seed=body.get("seed"),
        )
        result = asyncio.run(self.generator.generate(call))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": result.finish_reason,
        }
        usage = {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens}
        answer = {"object": "chat.completion", "model": self.model, "choices": [choice], "usage": usage}
        for name in self.omit:
            choice.pop(name, None)
            answer.pop(name, None)
        return answer

    def _echo(self, prompt: str, add_special: bool) -> dict[str, Any]:
        tokens, logprobs = self._prompt_logprobs(prompt, add_special)
        if self.echo_fault == "shifted":
            logprobs = [*logprobs[1:], -1.0]
        elif self.echo_fault == "constant":
            logprobs = [-5.0] * len(logprobs)
        offsets = [sum(map(len, tokens[:i])) for i in range(len(tokens))]
        tokens.append(" ")  # the one token generated after the prompt, as real servers add
        offsets.append(len(prompt))
        logprobs.append(-1.0)
        return {
            "object": "text_completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "text": prompt + " ",
                    "finish_reason": "length",
                    "logprobs": {"tokens": tokens, "text_offset": offsets, "token_logprobs": logprobs},
                }
            ],
            "usage": {"prompt_tokens": len(tokens) - 1, "completion_tokens": 1},
        }


def _render(tok: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """What vLLM's `/tokenize` and `/detokenize`, or llama.cpp's `/apply-template`, answer."""
    if path == "/detokenize":
        return {"prompt": tok.decode(body["tokens"])}
    add = body.get("add_generation_prompt", path == "/apply-template")
    if path == "/tokenize":
        return {"tokens": tok.apply_chat_template(body["messages"], add_generation_prompt=add, tokenize=True)}
    return {"prompt": tok.apply_chat_template(body["messages"], add_generation_prompt=add, tokenize=False)}


def _greedy_token(model: Any, tok: Any, text: str) -> str:
    """The most likely next token after `text`, as text."""
    import mlx.core as mx

    ids = tok.encode(text, add_special_tokens=True)
    best = mx.argmax(model(mx.array([ids]))[0, -1]).item()
    assert isinstance(best, int)
    return str(tok.decode([*ids, best]))[len(tok.decode(ids)) :]


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: dict[str, Any]) -> None:
            status, headers, payload = server.answer(self.path, body, self.headers.get("Authorization"))
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                pass

        def do_GET(self) -> None:
            self._reply({})

        def do_POST(self) -> None:
            self._reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(server: FakeServer) -> Iterator[FakeServer]:
    """Serve `server` on a free loopback port for the duration of the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
