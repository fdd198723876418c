"""List mutmut's surviving mutants, grouped by what each changes, as Markdown for docs/testing.md.

Run from the tree where `mutmut run` ran (it reads `mutants/`):

    .venv/bin/python scripts/mutation_survivors.py > /tmp/survivors.md

A mutant that changes only the text inside string literals is grouped by where that text goes: a
log message, a telemetry name, an error message, a model prompt. Any other is a change of logic and
is listed on its own, for a person to kill with a test or to explain.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData  # type: ignore[import-not-found]
from mutmut.mutation.diff_apply import get_diff_for_mutant  # type: ignore[import-not-found]
from mutmut.stats import status_by_exit_code  # type: ignore[import-not-found]
from mutmut.utils.file_utils import walk_mutatable_files  # type: ignore[import-not-found]

CAUGHT = {"killed", "timeout", "caught by type check", "not checked"}
STRING = re.compile(r"""(?:[rbfu]{0,2})("([^"\\]|\\.)*"|'([^'\\]|\\.)*')""", re.IGNORECASE)
TEXT_PLACES = [
    ("log message", re.compile(r"\blog(ger)?\.(debug|info|warning|error|exception)\b|performance\.info")),
    ("telemetry name or value", re.compile(r"set_attribute|attributes|\"(gen_ai|reer|error|server)\.|metrics\.|span")),
    ("error message", re.compile(r"\braise\b|Error\(|Refused\(|CircuitOpen\(")),
]


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The lines a mutant removes and adds."""
    lines = diff.splitlines()
    removed = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    return removed, added


CALLS = [
    ("log call", re.compile(r"^log(ger)?\.(debug|info|warning|error|exception)\(")),
    ("telemetry call", re.compile(r"^(span\.set_(attribute|status)|metrics\.\w+\.(record|add))\(")),
]
"""Lines whose only effect is a log record or telemetry: a mutant of their arguments changes what is
reported, which the log and telemetry tests check, not what the code does."""


def kind(path: Path, removed: list[str], added: list[str], context: str) -> str:
    """What a mutant changes: the place of a text, a log or telemetry call, or `logic`."""
    if [STRING.sub('""', line) for line in removed] != [STRING.sub('""', line) for line in added]:
        for name, pattern in CALLS:
            if removed and all(pattern.search(line) for line in removed):
                return name
        return "logic"
    if path.name == "prompts.py":
        return "prompt wording"
    for name, pattern in TEXT_PLACES:
        if pattern.search(context):
            return name
    return "other text"


def survivors() -> dict[str, list[tuple[str, str, str]]]:
    """Surviving (or untested) mutants by kind: each as (name, status, the changed line)."""
    grouped: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            if status in CAUGHT:
                continue
            diff = get_diff_for_mutant(name, path=path)
            removed, added = changed_lines(diff)
            context = "\n".join(line for line in diff.splitlines() if not line.startswith(("---", "+++", "-")))
            grouped[kind(Path(path), removed, added, context)].append((name, status, " / ".join(added)[:160]))
    return grouped


def main() -> None:
    grouped = survivors()
    total = sum(len(v) for v in grouped.values())
    print(f"{total} mutants not caught\n")
    for name in sorted(grouped, key=lambda k: (k == "logic", k)):
        print(f"## {name} ({len(grouped[name])})\n")
        for mutant, status, line in grouped[name]:
            shown = line.replace("|", "\\|")
            print(f"- `{mutant}` ({status}): `{shown}`")
        print()


if __name__ == "__main__":
    sys.exit(main())
