"""The seam between the local provider and its backends: the `Engine` Protocol, and `open_engine`,
which picks the backend for a loaded model.

The provider's model thread owns an engine. `add` queues a request and computes nothing; `step`
advances every request the engine holds by one scheduled unit of work (a decode step for each
generation, a chunk of each prompt or scored text) and returns those that finished. Two backends:
- `numpy_engine.NumpyEngine`, on a CPU for llama-like models: its `scheduler` decides what each row
  feeds, `numpy_model` runs the batched forward pass, `sampling` picks the tokens;
- `mlx_engine.MlxEngine`, on GPUs and for the models numpy does not run: MLX, with mlx-lm's
  `BatchGenerator` for decode steps.
"""

from __future__ import annotations

from typing import Any, Protocol

from runtime.providers.local.requests import Request, Tokens


class Engine(Protocol):
    """A backend of the local provider, used from the model thread only."""

    name: str
    """What runs the model, for `check` and spans ("numpy", "mlx-lm (...)")."""

    @property
    def generation(self) -> Tokens:
        """Prompt tokens of generations reused from the prefix cache, and computed."""
        ...

    @property
    def scoring(self) -> Tokens:
        """Tokens of scorings reused from the prefix cache, and computed."""
        ...

    @property
    def busy(self) -> bool:
        """Whether a request is queued or in progress."""
        ...

    def add(self, request: Request) -> None:
        """Queue `request`; the work is done by the next steps."""
        ...

    def step(self) -> list[Request]:
        """Advance every request held; those that finished (their results filled in)."""
        ...


def open_engine(model: Any, tokenizer: Any, budget_bytes: int, max_batch: int) -> Engine:
    """The numpy engine on a CPU for the models it supports, else the MLX engine (on the model thread)."""
    import mlx.core as mx

    from runtime.providers.local import cpu
    from runtime.providers.local.mlx_engine import MlxEngine
    from runtime.providers.local.numpy_engine import NumpyEngine
    from runtime.providers.local.numpy_model import Weights

    on_cpu = mx.default_device() == mx.cpu
    why = Weights.unsupported(model) if on_cpu else "the model runs on a GPU"
    if why is None:
        return NumpyEngine(model, tokenizer, budget_bytes)
    if on_cpu:  # MLX's own attention and SwiGLU, with numpy's exp, for this thread
        cpu.install(model)
        cpu.activate()
    return MlxEngine(model, tokenizer, budget_bytes, max_batch, why)
