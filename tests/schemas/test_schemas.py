"""The checked-in JSON Schemas match the types, and real records validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from reer_runtime.validate import validate
from runtime.schemas import RECORDS, SCHEMA_DIR, render
from tests.helpers import post_line, validator


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_checked_in_schema_is_the_generated_one(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.read_text() == render(name), f"{path} drifted: run `python -m runtime.schemas --write`"


def test_no_stray_schema_files() -> None:
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == {f"{n}.schema.json" for n in RECORDS}


def test_the_event_schema_accepts_what_the_ingestor_accepts_and_refuses_the_rest() -> None:
    events = validator("event")
    events.validate(json.loads(post_line(1)))
    events.validate({"type": "generate", "topic": "pricing"})
    assert not events.is_valid(json.loads(post_line(1, platform="myspace")))
    assert not events.is_valid({"type": "post", "id": "1"})


def test_schemas_do_not_depend_on_how_msgspec_renders_docstrings(monkeypatch: pytest.MonkeyPatch) -> None:
    """msgspec 0.19-0.22 keep a docstring's indent, 0.23 dedents it: both render the same file."""

    original = msgspec.json.schema

    def indented(record: object) -> dict[str, object]:
        indented: dict[str, object] = json.loads(json.dumps(original(record)).replace("\\n\\n", "\\n\\n    "))
        return indented

    dedented = render("accepted")
    monkeypatch.setattr(msgspec.json, "schema", indented)
    assert "\\n\\n    " in json.dumps(msgspec.json.schema(RECORDS["accepted"]))
    assert render("accepted") == dedented


def test_validate_fails_loudly_when_the_installed_schemas_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(tmp_path, provider="dummy://") == 0
    (tmp_path / "schemas").mkdir()
    monkeypatch.setattr("reer_runtime.validate.SCHEMA_DIR", tmp_path / "schemas")  # as from a wheel without them
    capsys.readouterr()
    assert validate(tmp_path, provider="dummy://") == 1
    assert f"PROBLEM  schemas {', '.join(RECORDS)} are missing from {tmp_path / 'schemas'}" in capsys.readouterr().out
