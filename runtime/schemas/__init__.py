"""JSON Schemas of every record that leaves the process, generated from the msgspec types.

The files sit beside this module, as package data: `python -m runtime.schemas --write` refreshes
them, and the tests fail when they drift.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from runtime.errors import ExitCode
from runtime.records import (
    Accepted,
    DeadLetter,
    Draft,
    Failure,
    InputEvent,
    Program,
    Rejected,
    Requested,
    Trace,
    Watched,
)

RECORDS: dict[str, Any] = {
    "event": InputEvent,
    "trace": Trace,
    "accepted": Accepted,
    "rejected": Rejected,
    "failure": Failure,
    "dead-letter": DeadLetter,
    "candidate": Draft,
    "program": Program,
    "watched": Watched,
    "request": Requested,
}

SCHEMA_DIR = Path(__file__).resolve().parent


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of record `name`."""
    generated: dict[str, Any] = _clean(msgspec.json.schema(RECORDS[name]))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name, **generated}


def _clean(node: Any) -> Any:
    """`node` with every description dedented as `inspect.cleandoc` does: msgspec releases differ
    in how they render docstrings (0.23 dedents, earlier ones keep the indent)."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value) if key == "description" and isinstance(value, str) else _clean(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


def render(name: str) -> str:
    return json.dumps(schema(name), indent=2, sort_keys=True) + "\n"


def main() -> int:
    if "--write" not in sys.argv[1:]:
        print("usage: python -m runtime.schemas --write   (rewrites runtime/schemas/*.schema.json)", file=sys.stderr)
        return ExitCode.USAGE
    for name in RECORDS:
        (SCHEMA_DIR / f"{name}.schema.json").write_text(render(name))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
