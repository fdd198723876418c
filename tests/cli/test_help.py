"""Every command explains every option, and no command's function grows past a screen."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from reer_runtime.cli import parser

CLI = Path(__file__).resolve().parents[2] / "reer_runtime" / "cli"


def _parsers(top: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [("reer-runtime", top)]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {n}" if n != "reer-runtime" else name, p) for n, p in _parsers(sub)]
    return found


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, command in _parsers(parser())
        for action in command._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
    names = {name for name, _ in _parsers(parser())}
    assert {"mine", "demo", "generate", "optimize", "templates", "validate", "start", "worker"} <= names


def test_no_function_of_the_command_line_is_over_60_lines() -> None:
    long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(CLI.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.end_lineno and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []
