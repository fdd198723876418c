"""Configuration: defaults, then `<data-dir>/config.toml`, then `REER_*` variables, then flags.

Nested values use `__` in variable names, e.g. `REER_SEARCH__MAX_STEPS=4`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FilePath, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from runtime import config_file
from runtime.errors import ConfigError, UsageError
from runtime.records import InputFormat, Optimizer, Platform
from runtime.writer.templates import Template, catalogue

log = logging.getLogger(__name__)

DEFAULT_MODEL = "mlx://smollm2-135m"


class SearchSettings(BaseModel):
    """REER search parameters; defaults are those of the authors' code (see docs/reer.md)."""

    max_steps: int = Field(10, ge=0, description="plan sections refined, in order (there are five)")
    num_expansion: int = Field(2, ge=1, description="candidate rewrites per section")
    stop_thresh: float = Field(0.25, ge=0, description="stop once the clipped mean NLL is below this")
    clip_min: float = Field(-2.0, lt=0, description="token log-probabilities are clipped to [clip_min, 0]")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.85, gt=0, le=1)
    section_max_tokens: int = Field(120, ge=8, description="longest plan section the generator may write")
    init_attempts: int = Field(3, ge=1, description="tries for each initial plan section that does not copy the post")
    max_overlap: float = Field(0.10, ge=0, le=1, description="share of the post's word 3-grams a plan may hold")
    max_copied_words: int = Field(6, ge=2, description="this many post words in a row make a plan a copy")
    max_content_overlap: float = Field(
        0.5, ge=0, le=1, description="share of the post's content words (stemmed) a plan may name: a paraphrase guard"
    )
    held_out: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of the post's tokens the search never sees, on which the found plan is judged "
        "against a generic plan (the held-out gain); 0: the search sees every token and nothing is judged",
    )


class LimitSettings(BaseModel):
    """Limits on one provider's calls."""

    per_minute: int | None = Field(None, ge=1)
    per_hour: int | None = Field(None, ge=1)
    concurrency: int | None = Field(
        None, ge=1, description="calls in flight at once; by default what the provider batches itself (mlx://), else 4"
    )
    max_retries: int = Field(3, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    max_retry_after_s: float = Field(60.0, ge=0)
    circuit_failures: int = Field(5, ge=1, description="failed attempts in a row that open the circuit")
    circuit_reset_s: float = Field(30.0, gt=0, description="how long an open circuit refuses calls")


class CsvMapping(BaseModel):
    """How the columns of a CSV export become a post (`--csv KEY=VALUE,...` or `[csv]`)."""

    text: str = Field("text", description="column of the post's text")
    time: str = Field("created_at", description="column of the publication time")
    time_format: str | None = Field(
        None,
        description="strptime format of the time, e.g. '%m/%d/%y %H:%M'; "
        "default ISO 8601; a time without a zone is UTC",
    )
    id: str | None = Field(None, description="column of the post's id or permalink (default: the row number)")
    likes: str | None = None
    reposts: str | None = None
    replies: str | None = None
    impressions: str | None = None
    author: str | None = Field(None, description="column of the author's handle")
    author_name: str = Field("me", description="the author when there is no author column")
    platform: Platform = Platform.X
    encoding: str | None = Field(None, description="the file's encoding (default: UTF-8, else cp1252)")

    def columns(self) -> list[str]:
        named = [self.text, self.time, self.id, self.likes, self.reposts, self.replies, self.impressions, self.author]
        return [c for c in named if c]


AdapterChoice = Literal["auto", "plain", "chat", "json"]
"""How the writer's prompts are laid out (runtime/writer/adapter.py)."""


class WriterSettings(BaseModel):
    """The writer program: how it is compiled and how drafts are sampled."""

    optimizer: Optimizer = Field("bootstrap", description="used when a request names none")
    optimize_after: int | None = Field(
        50, ge=1, description="compile after this many new traces (none: only on request)"
    )
    min_traces: int = Field(4, ge=2, description="fewer traces than this are not enough to compile on")
    max_traces: int = Field(200, ge=2, description="the most recent traces used to compile")
    val_fraction: float = Field(0.25, gt=0, lt=1, description="share of the traces kept to validate a program")
    min_gain: float = Field(
        0.0,
        description="traces whose held-out gain (nats a token better than a generic plan, on tokens the search did "
        "not see) is at or below this are left out of compiles; traces that do not measure it are kept",
    )
    max_demos: int = Field(4, ge=0, description="demonstrations per predictor")
    mipro_candidates: int = Field(3, ge=1)
    mipro_trials: int = Field(4, ge=1)
    gepa_max_metric_calls: int = Field(40, ge=1, description="GEPA's budget of metric calls")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of drafts")
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="nucleus sampling of drafts: tokens outside the most likely ones holding this share of the "
        "probability are never picked; 1: none is cut",
    )
    frequency_penalty: float = Field(
        0.5,
        ge=-2,
        le=2,
        description="subtracted from a token's logit once for each time the step already wrote it (OpenAI's "
        "meaning; served and cloud models get it as their own frequency_penalty): above 0, fewer loops; 0: none",
    )
    max_tokens: int = Field(400, ge=16, description="longest answer of one writer step")
    max_tries: int = Field(
        3,
        ge=1,
        description="tries per draft: one that breaks the platform's limits or fails the draft gate is written "
        "again up to this",
    )
    adapter: AdapterChoice = Field(
        "auto",
        description="prompt layout: plain text (small local models), DSPy's chat or json format; auto: chat when "
        "every generator is a served or cloud model, else plain",
    )
    max_calls_per_request: int | None = Field(
        2000,
        ge=1,
        description="model calls one generate or optimize request may make (what one input line may cost); "
        "a compile over it is refused, drafts stop there; none: no cap",
    )


class LoggingSettings(BaseModel):
    """Where logs go beside stderr, and how much each component says."""

    model_config = ConfigDict(extra="forbid")

    file_enabled: bool = Field(False, description="also log to `file`, rotated by size")
    file: Path | None = Field(None, description="the log file (default <data-dir>/logs/reer.log)")
    max_bytes: int = Field(10_000_000, ge=1024, description="a log file this large is rotated")
    backups: int = Field(5, ge=0, description="rotated log files kept (reer.log.1, .2, ...)")
    levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict, description='a level per logger, e.g. "actors.miner" = "DEBUG", "httpx" = "WARNING"'
    )
    performance_tracking: bool = Field(False, description="log each handled message with its duration")


class BusSettings(BaseModel):
    """What carries the actors' messages: memory in one process, or NATS JetStream across several."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        "memory://",
        pattern=r"^(memory://|(nats|tls)://\S+)$",
        description="memory://, or nats://HOST:PORT (JetStream; tls://HOST:PORT over TLS; USER:PASSWORD@ before HOST)",
    )
    tls_ca: FilePath | None = Field(
        None, description="the CA certificate(s) to trust for the broker's TLS, when no system CA signs it"
    )
    creds: FilePath | None = Field(None, description="a NATS credentials file (an account's JWT and NKey seed)")
    namespace: str = Field(
        "reer", pattern=r"^[A-Za-z0-9_-]+$", description="keeps one deployment's streams apart from another's"
    )
    ack_wait_s: float = Field(30.0, gt=0, description="a worker silent this long loses its message to another")
    max_deliver: int = Field(5, ge=1, description="deliveries of one message before it becomes a dead letter")
    duplicate_window_s: float = Field(3600.0, gt=0, description="the same work published within this is stored once")
    mine_here: bool = Field(True, description="run miners in the coordinator too (with nats://)")


class Settings(BaseSettings):
    """Everything `reer-runtime start` can be told."""

    model_config = SettingsConfigDict(env_prefix="REER_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path
    config_file: Path | None = Field(None, description="the configuration file read, if any")
    trace_store: Path | None = Field(None, description="the trace store's file (default <data-dir>/traces.jsonl)")
    generator: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEFAULT_MODEL], min_length=1)
    scorer: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEFAULT_MODEL], min_length=1)
    judge: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="a scorer that takes no part in the search and judges the plans it found (the held-out "
        "figures' second opinion); none by default",
    )
    min_engagement: float = Field(0.8, ge=0, le=1, description="mine posts whose engagement score is at least this")
    min_author_posts: int = Field(1, ge=1, description="mine nothing of an author with fewer posts than this")
    miner_concurrency: int | None = Field(
        None,
        ge=1,
        description="posts mined at once; by default as many as the generator decodes together (its batch "
        "capacity over search.num_expansion, the calls a post has in flight), else 2",
    )
    bus_buffer: int = Field(64, ge=1)
    bus: BusSettings = Field(default_factory=BusSettings)
    max_line_bytes: int = Field(1_000_000, ge=64, description="longer input lines are rejected")
    max_text_chars: int = Field(10_000, ge=1, description="posts with longer text are rejected")
    max_nesting: int = Field(32, ge=2, le=900, description="lines whose JSON nests deeper are rejected")
    batch_max_lines: int = Field(10_000, ge=1)
    shutdown_grace_s: float = Field(30.0, ge=0)
    watch_settle_s: float = Field(
        5.0, ge=0, description="--watch takes a file once its size and time have held this long (seconds)"
    )
    stats_interval_s: float = Field(10.0, gt=0, description="how often stats.json is rewritten")
    progress_interval_s: float = Field(
        10.0, gt=0, description="how often a progress line is logged (not on a terminal)"
    )
    max_consecutive_failures: int = Field(5, ge=1)
    retry_failed_on_start: bool = Field(False, description="mine again, at start, the posts in failed.jsonl")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    input_format: InputFormat = Field(
        "auto", description="the format of the input files; auto tells it from their content"
    )
    csv: CsvMapping = Field(default_factory=CsvMapping)
    mine_reposts_and_replies: bool = Field(False, description="also mine reposts (RT @...) and replies")
    search: SearchSettings = Field(default_factory=SearchSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    limits: dict[str, LimitSettings] = Field(
        default_factory=dict, description="per provider URI; the key 'default' applies to the others"
    )
    templates: list[Template] = Field(
        default_factory=list, description="writing templates beside the shipped ones ([[templates]] tables)"
    )

    @field_validator("templates")
    @classmethod
    def _unique_names(cls, value: list[Template]) -> list[Template]:
        try:
            catalogue(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def traces_path(self) -> Path:
        """The trace store's file."""
        return (self.trace_store or self.data_dir / "traces.jsonl").expanduser()

    @property
    def log_file(self) -> Path | None:
        """The log file, when logging to one is on."""
        if not self.logging.file_enabled:
            return None
        return (self.logging.file or self.data_dir / "logs" / "reer.log").expanduser()

    def writing_templates(self) -> dict[str, Template]:
        """Every template by name: the shipped ones and the configured ones."""
        return catalogue(self.templates)

    @field_validator("generator", "scorer", "judge", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",")] if isinstance(value, str) else value

    def mining_concurrency(self, generator_capacity: int | None) -> int:
        """Posts mined at once: `miner_concurrency`, else enough for the generator's batch, else 2."""
        if self.miner_concurrency is not None:
            return self.miner_concurrency
        return max(1, generator_capacity // self.search.num_expansion) if generator_capacity else 2

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        path = init_settings.init_kwargs.get("config_file")
        from_file = config_file.read(path, sub_settings()) if path else {}
        return (init_settings, env_settings, InitSettingsSource(settings_cls, from_file))


def sub_settings() -> dict[str, tuple[str, ...] | None]:
    """Each setting's sub-settings: a section's keys, or None when its keys are free (`limits`)."""
    fields: dict[str, tuple[str, ...] | None] = {}
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        fields[name] = tuple(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return fields


def resolve_data_dir(flag: str | None) -> Path:
    """`--data-dir`, else `$REER_HOME`, else `~/.reer`."""
    return Path(flag or os.environ.get("REER_HOME") or Path.home() / ".reer").expanduser().resolve()


def load_settings(data_dir: Path, config: Path | None = None, **flags: Any) -> Settings:
    """Read and validate the configuration: `config`, else `$REER_CONFIG`, else the data dir's file
    (`runtime/config_file.py`), then the variables and `flags`. Raises `ConfigError` with every
    problem found."""
    path = config_file.find(data_dir, config)
    overrides = {k: v for k, v in flags.items() if v is not None} | {"config_file": path}
    for name, hint in unknown_variables(os.environ):
        log.warning("%s is not a setting and is ignored%s", name, f" (did you mean {hint}?)" if hint else "")
    try:
        return Settings(data_dir=data_dir, **overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"invalid configuration ({path or 'no file'}, REER_* variables, flags): {problems}") from None


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The `REER_*` variables that name no setting, each with the closest name that does (or None)."""
    known = {"REER_HOME", "REER_CONFIG"}
    for name, field in Settings.model_fields.items():
        known.add(f"REER_{name.upper()}")
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            known |= {f"REER_{name.upper()}__{sub.upper()}" for sub in field.annotation.model_fields}
    unknown = []
    for variable in sorted(v for v in environ if v.upper().startswith("REER_")):
        upper = variable.upper()
        if upper in known or upper.startswith("REER_LIMITS__"):  # limits are keyed by provider URI
            continue
        hint = difflib.get_close_matches(upper, known, n=1)
        unknown.append((variable, hint[0] if hint else None))
    return unknown
