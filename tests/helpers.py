"""Helpers the tests share: posts as records and as input lines, the fixture files, the schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import msgspec

from runtime.records import Metrics, Platform, PostEvent
from runtime.schemas import SCHEMA_DIR

FIXTURES = Path(__file__).parent / "fixtures"


def daemon_env() -> dict[str, str]:
    """This process's environment without OTEL_* and REER_* variables: a daemon started with it
    reads only the settings its test gives."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REER_"))}


def cli(data: Path | str, *args: str) -> list[str]:
    """The command line that runs `reer-runtime --data-dir DATA ARGS` from this checkout."""
    return [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), *args]


def run_cli(
    data: Path | str, *args: str, stdin: str | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`reer-runtime --data-dir DATA ARGS` from this checkout on `dummy://` models, to its end; with
    `umask`, the child process starts under it."""
    env = daemon_env() | {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://"}
    return subprocess.run(
        cli(data, *args),
        input=stdin,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=None if umask is None else partial(os.umask, umask),
    )


def validator(name: str) -> jsonschema.Draft202012Validator:
    """The JSON Schema `runtime/schemas/NAME.schema.json` as a validator."""
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text()))


def validate_store(path: Path, name: str) -> int:
    """Validate every line of a store file against its schema; returns how many records it holds."""
    check = validator(name)
    lines = path.read_bytes().splitlines()
    for line in lines:
        check.validate(msgspec.json.decode(line))
    return len(lines)


def make_post(i: int, text: str | None = None, author: str = "maker", likes: int | None = None) -> PostEvent:
    return PostEvent(
        id=str(i),
        text=text or f"Post number {i}: we shipped feature {i} and learned {i % 7} things about users.",
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i),
        platform=Platform.X,
        author=author,
        metrics=Metrics(likes=likes if likes is not None else i * 3 % 50, reposts=i % 5, replies=i % 3),
    )


def post_line(i: int, **fields: Any) -> str:
    event: dict[str, Any] = {
        "type": "post",
        "id": str(i),
        "platform": "x",
        "author": f"author{i % 3}",
        "created_at": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        "text": f"Shipping log {i}: we cut onboarding to {i % 9 + 2} steps and activation rose {i % 13 + 1}%.",
        "metrics": {"impressions": 1000 + i * 37, "likes": (i * 7) % 61, "reposts": i % 6, "replies": i % 4},
    }
    event.update(fields)
    return json.dumps(event)
