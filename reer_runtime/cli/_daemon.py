"""The daemon, as the commands that run it call it: `start`, `mine`, `retry-failed`, `generate`, `optimize`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from runtime.errors import UsageError
from runtime.records import Draft, GenerateEvent, OptimizeEvent
from runtime.writer.templates import Template, checked, lookup

from ._options import data_dir, log_flags, model_flags


def run_daemon(
    args: argparse.Namespace,
    *,
    sources: Sequence[str] = (),
    requests: Sequence[GenerateEvent | OptimizeEvent] = (),
    exit_when_idle: bool = True,
    watch: Path | None = None,
    metrics_port: int | None = None,
    show_draft: Callable[[Draft], None] | None = None,
    **settings: Any,
) -> int:
    """Run the daemon on `sources` and `requests` with the command's settings, until it is idle if
    `exit_when_idle`; its exit code."""
    # DSPy keeps its cache in the data dir, and litellm (loaded only for cloud models) stays offline
    os.environ.setdefault("DSPY_CACHEDIR", str(data_dir(args) / "dspy-cache"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import anyio

    from reer_runtime.daemon import check_chains, make_data_dir, open_chains, serve
    from runtime.config import load_settings
    from runtime.inputs.sources import check, missing
    from runtime.lock import exclusive
    from runtime.logs import configure
    from runtime.telemetry import setup_telemetry

    if problems := [p for p in map(missing, sources) if p]:
        raise UsageError("; ".join(problems))
    with ExitStack() as stack:
        try:
            config = load_settings(data_dir(args), **log_flags(args), **model_flags(args), **settings)
            make_data_dir(config.data_dir)
            stack.enter_context(exclusive(config.data_dir))
            for source in sources:
                if source != "-":
                    check(Path(source), config.input_format, config.csv)
            chains = open_chains(config)
            telemetry = setup_telemetry(metrics_port)
        except (OSError, ValueError) as exc:  # the data dir or an input cannot be made or read
            raise UsageError(str(exc)) from None
        stack.callback(telemetry.shutdown)
        configure(config, telemetry.log_handler)
        _check_templates(config.writing_templates(), requests)
        chains = anyio.run(check_chains, chains)
        run = partial(
            serve,
            config,
            chains,
            list(sources),
            exit_when_idle=exit_when_idle,
            requests=list(requests),
            watch=watch.resolve() if watch else None,
            stats_reader=telemetry.stats_reader,
            show_draft=show_draft,
        )
        code: int = anyio.run(run)
    return code


def _check_templates(templates: dict[str, Template], requests: Sequence[GenerateEvent | OptimizeEvent]) -> None:
    """Refuse, before the daemon starts, a request for a template it does not know or cannot run."""
    for request in requests:
        if isinstance(request, GenerateEvent):
            checked(templates, request)
        else:
            lookup(templates, request.template)
