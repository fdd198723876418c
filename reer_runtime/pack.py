"""The REER x DSPy x MLX pack's own calls, on reer-runtime's API.

The pack shows its users these names (its `core.integration`, `plugins.dspy_pipeline` and LM
registry); each is a thin layer over `Runtime` or `Models`, and says which:

    from reer_runtime.pack import create_mining_service, create_dspy_pipeline, get_social_media_templates, registry

- `create_mining_service` → a `MiningService` over a `Runtime`;
- `registry.route_generate` → `Models.generate` with fallbacks;
- `create_dspy_pipeline` → the writing templates run on `Models`, through the Limiter.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.from_thread
import dspy
import msgspec
from opentelemetry import trace as otel_trace

from runtime.config import LimitSettings
from runtime.errors import ProviderError, UsageError
from runtime.providers.calls import GenerateCall, Generation
from runtime.records import GenerateEvent, Trace
from runtime.writer.adapter import adapter_for
from runtime.writer.lm import limiter_lm
from runtime.writer.program import WriterProgram, render_brief
from runtime.writer.templates import Template, catalogue

from ._models import Models
from ._runtime import Runtime

tracer = otel_trace.get_tracer("reer-runtime.pack")

__all__ = [
    "DSPyPipeline",
    "LoggingConfig",
    "MiningService",
    "ProviderRegistry",
    "RateLimitConfig",
    "Template",
    "create_dspy_pipeline",
    "create_mining_service",
    "get_social_media_templates",
    "registry",
]


@dataclass(frozen=True)
class RateLimitConfig:
    """The pack's rate limits: they become `limits.default` (every provider's own limit)."""

    max_requests_per_minute: int | None = 60
    max_requests_per_hour: int | None = 1000

    def limits(self) -> dict[str, LimitSettings]:
        return {"default": LimitSettings(per_minute=self.max_requests_per_minute, per_hour=self.max_requests_per_hour)}


@dataclass(frozen=True)
class LoggingConfig:
    """The pack's logging: level and format (`text` or `json`) of the process's log lines on stderr."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    format: Literal["text", "json"] = "text"
    file_enabled: bool = False
    """Also log to `<data-dir>/logs/reer.log`, rotated by size."""
    performance_tracking: bool = False
    """Log each handled message with its duration."""

    def settings(self) -> dict[str, Any]:
        """These choices as the runtime's settings."""
        logging = {"file_enabled": self.file_enabled, "performance_tracking": self.performance_tracking}
        return {"log_level": self.level.upper(), "log_format": self.format, "logging": logging}


class MiningService:
    """The pack's integrated miner, on a `Runtime` (`create_mining_service` makes one)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._open = False

    async def initialize(self) -> None:
        """Open the runtime: stores, actors, models (their start-up checks)."""
        if not self._open:
            await self.runtime.__aenter__()
            self._open = True

    async def close(self) -> None:
        """Finish the work in flight and stop."""
        if self._open:
            self._open = False
            await self.runtime.__aexit__(None, None, None)

    async def __aenter__(self) -> MiningService:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._open:
            self._open = False
            await self.runtime.__aexit__(*exc_info)

    async def extract_and_store(
        self,
        source_post_id: str,
        content: str,
        seed_params: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> str:
        """Mine the strategy behind one post and store the trace; the trace's id (`Runtime.mine_post`).

        The brief is derived from the post, as for every mined post. `seed_params` (topic, style,
        length, thread_size) and the `trace_context` id are recorded on the span."""
        span = otel_trace.get_current_span()
        for key, value in (seed_params or {}).items():
            span.set_attribute(f"reer.seed.{key}", str(value))
        if trace_id:
            span.set_attribute("reer.pack.trace_id", trace_id)
        trace = await self.runtime.mine_post(content, post_id=source_post_id)
        return trace.trace_id

    async def query_traces(self, min_score: float = 0.0, limit: int | None = None, **filters: Any) -> list[Trace]:
        """Stored traces whose post's engagement score is at least `min_score` (`Runtime.traces`)."""
        return await self.runtime.traces(min_score=min_score, limit=limit, **filters)

    async def get_performance_stats(self) -> dict[str, Any]:
        """`Runtime.stats` as a dict, with the pack's `trace_store_stats.total_traces`."""
        stats = self.runtime.stats()
        figures = msgspec.structs.asdict(stats)
        figures["store"] = msgspec.structs.asdict(stats.store)
        figures["trace_store_stats"] = figures["store"]
        figures["models"] = {k: msgspec.structs.asdict(v) for k, v in stats.models.items()}
        return figures

    @asynccontextmanager
    async def trace_context(self, operation: str) -> AsyncIterator[str]:
        """A span named `operation`; what runs inside is part of its trace. Yields the trace id (hex)."""
        with tracer.start_as_current_span(operation) as span:
            yield format(span.get_span_context().trace_id, "032x")


def create_mining_service(
    trace_store_path: str | os.PathLike[str] | None = None,
    default_provider_uri: str | None = None,
    rate_limit_config: RateLimitConfig | None = None,
    logging_config: LoggingConfig | None = None,
    **settings: Any,
) -> MiningService:
    """The pack's `create_mining_service`, on a `Runtime`.

    `trace_store_path` names the trace store `DIR/traces.jsonl`: DIR becomes the data dir, with the
    other stores beside it (default: `~/.reer`). `default_provider_uri` is the model of both roles.
    """
    data_dir = None
    if trace_store_path is not None:
        path = Path(trace_store_path).expanduser()
        if path.name != "traces.jsonl":
            raise UsageError(
                f"trace_store_path {path}: the trace store is a data dir's traces.jsonl; name DIR/traces.jsonl"
            )
        data_dir = path.parent.resolve()
    if rate_limit_config is not None:
        settings.setdefault("limits", rate_limit_config.limits())
    if logging_config is not None:
        settings |= logging_config.settings()
    runtime = Runtime(data_dir, provider=default_provider_uri, configure_logging=logging_config is not None, **settings)
    return MiningService(runtime)


class ProviderRegistry:
    """The pack's LM registry: any provider URI, with fallbacks, on `Models`."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self._data_dir = data_dir
        self._models: Models | None = None

    @property
    def models(self) -> Models:
        """The models opened, on the data dir resolved at first use (so `$REER_HOME` set later counts)."""
        if self._models is None:
            self._models = Models(self._data_dir)
        return self._models

    async def route_generate(
        self, uri: str, prompt: str, fallback_uris: Sequence[str] = (), **options: Any
    ) -> Generation:
        """A completion of `prompt` by `uri`, else its fallbacks in turn (`Models.generate`)."""
        return await self.models.generate(uri, prompt, fallbacks=fallback_uris, **options)

    async def aclose(self) -> None:
        """Release the models opened."""
        if self._models is not None:
            await self._models.aclose()


registry = ProviderRegistry()
"""The process's registry, on the default data dir (the pack's global one)."""


def get_social_media_templates() -> dict[str, Template]:
    """The writing templates that ship: content_generation, thread, reply and repurpose."""
    return catalogue()


@dataclass
class _PipelineMetrics:
    pipelines_executed: int = 0
    failures: int = 0
    by_template: dict[str, int] = field(default_factory=dict)


class DSPyPipeline:
    """Runs registered writing templates on a primary model and its fallbacks, through the Limiter."""

    def __init__(
        self,
        primary_provider_uri: str,
        fallback_provider_uris: Sequence[str] = (),
        *,
        data_dir: str | os.PathLike[str] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 400,
    ) -> None:
        self.models = Models(data_dir)
        self._chain = [primary_provider_uri, *fallback_provider_uris]
        self._temperature, self._max_tokens = temperature, max_tokens
        self.templates: dict[str, Template] = {}
        self._metrics = _PipelineMetrics()

    def register_template(self, template: Template) -> None:
        """Make `template` runnable by name."""
        self.templates[template.name] = template

    async def execute_pipeline(self, template_name: str, inputs: Mapping[str, Any]) -> dict[str, str]:
        """Run a template on `inputs`: the brief's fields (topic, style, target_audience or audience,
        platform, length, thread_size, key_message, call_to_action) and the template's own inputs.
        Returns the `plan` and the `post`."""
        template = self.templates.get(template_name)
        if template is None:
            known = ", ".join(sorted(self.templates)) or "none registered"
            raise UsageError(f"no template {template_name!r} (templates: {known})")
        brief_fields = {k: v for k, v in inputs.items() if k not in template.inputs}
        if "target_audience" in brief_fields:
            brief_fields["audience"] = brief_fields.pop("target_audience")
        try:
            request = msgspec.convert(brief_fields, GenerateEvent)
        except msgspec.ValidationError as exc:
            raise UsageError(f"inputs of {template_name}: {exc}") from None
        extra = {k: str(inputs[k]) for k in template.inputs if k in inputs}
        template.check(extra, request.thread_size)
        brief = render_brief(request)
        try:
            with tracer.start_as_current_span(f"template {template_name}"):
                prediction = await anyio.to_thread.run_sync(self._run, template, brief, extra)
        except ProviderError:
            self._metrics.failures += 1
            raise
        self._metrics.pipelines_executed += 1
        self._metrics.by_template[template_name] = self._metrics.by_template.get(template_name, 0) + 1
        return {"plan": str(prediction.plan), "post": str(prediction.post)}

    def _run(self, template: Template, brief: str, extra: dict[str, str]) -> dspy.Prediction:
        def call(request: GenerateCall) -> Generation:
            return anyio.from_thread.run(self._generate, request)

        lm = limiter_lm(call, models=",".join(self._chain), temperature=self._temperature, max_tokens=self._max_tokens)
        with dspy.context(lm=lm, adapter=adapter_for(self._chain, "auto")):
            return WriterProgram(template)(brief=brief, **extra)

    async def _generate(self, request: GenerateCall) -> Generation:
        limiter = self.models.limiter("generator", self._chain)
        result = await limiter.call("generator", request)
        assert isinstance(result, Generation)
        return result

    def get_metrics(self) -> dict[str, Any]:
        """`pipeline_metrics`: pipelines executed and failed, by template; `templates`: their names."""
        m = self._metrics
        return {
            "pipeline_metrics": {
                "pipelines_executed": m.pipelines_executed,
                "failures": m.failures,
                "by_template": dict(m.by_template),
            },
            "templates": sorted(self.templates),
            "providers": list(self._chain),
        }

    async def aclose(self) -> None:
        """Release the models opened."""
        await self.models.aclose()


def create_dspy_pipeline(
    primary_provider_uri: str, fallback_provider_uris: Sequence[str] = (), **options: Any
) -> DSPyPipeline:
    """The pack's `create_dspy_pipeline`: templates on a model chain (`DSPyPipeline`)."""
    return DSPyPipeline(primary_provider_uri, fallback_provider_uris, **options)
