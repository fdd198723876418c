"""A small OpenAI-compatible server on loopback, for tests and benchmarks of `openai://`.

It speaks `/v1/models`, `/v1/chat/completions` and `/v1/completions` with `echo` and `logprobs`,
with honest numbers: generation comes from a real provider (`dummy://` unless given another), and
prompt log-probabilities from the `dummy://` n-gram model, one token per character. It can demand a
key (and, like real servers, quote the wrong key back in its 401), refuse to echo, and serve
scripted failures (status, `Retry-After`, or a hang) to the next requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bus.messages import ChatMessage, GenerateCall
from runtime.providers.base import Provider
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
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scorer: DummyModel = field(default_factory=DummyModel)

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
        if body.get("model") != self.model:
            return 404, {}, {"error": {"message": f"model {body.get('model')!r} not found"}}
        if path == "/v1/chat/completions":
            if body.get("continue_final_message") and not self.continues:
                return 400, {}, {"error": {"message": "Unrecognized request argument: continue_final_message"}}
            return 200, {}, self._chat(body)
        if path == "/v1/completions":
            if not (self.echo and body.get("echo")):
                return 400, {}, {"error": {"message": "echo is not supported"}}
            return 200, {}, self._echo(body["prompt"])
        return 404, {}, {"error": {"message": f"no route {path}"}}

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
            stop=body.get("stop") or [],
            seed=body.get("seed"),
        )
        result = asyncio.run(self.generator.generate(call))
        choice = {"index": 0, "message": {"role": "assistant", "content": result.text},
                  "finish_reason": result.finish_reason}  # fmt: skip
        usage = {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens}
        answer = {"object": "chat.completion", "model": self.model, "choices": [choice], "usage": usage}
        for name in self.omit:
            choice.pop(name, None)
            answer.pop(name, None)
        return answer

    def _echo(self, prompt: str) -> dict[str, Any]:
        per_byte = self._scorer.score(b"", prompt.encode())
        tokens, offsets, logprobs = [], [], []
        position = 0
        for index, char in enumerate(prompt):
            size = len(char.encode())
            tokens.append(char)
            offsets.append(index)
            logprobs.append(None if index == 0 else sum(per_byte[position : position + size]))
            position += size
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
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1},
        }


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
