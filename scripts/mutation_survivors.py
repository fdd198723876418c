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


EXPLAINED: list[tuple[str, str]] = [
    # equivalent mutants: no input the code can receive behaves differently
    ("runtime.ledger.x__request_id__mutmut_12", "equivalent: a message body the bus writes is always an object"),
    (
        "runtime.ledger.xǁLedgerǁfailed_requests__mutmut_5",
        "equivalent: an error starts with an exception name, which has no space",
    ),
    (
        "runtime.store.xǁJsonlStoreǁ__init____mutmut_[78]",
        "equivalent: `open` sets `repaired_bytes` before anything reads it",
    ),
    (
        "runtime.store.xǁJsonlStoreǁopen__mutmut_(17|20)",
        "equivalent: records are written with os.write on the descriptor, never through the file object's buffer",
    ),
    (
        "runtime.store.x_repair_torn_tail__mutmut_2[56]",
        "equivalent: read at the last byte, read(None) and read(2) return that one byte too",
    ),
    ("runtime.reer.search.x_post_seed__mutmut_4", "equivalent: int.from_bytes is big-endian by default"),
    ("runtime.reer.search.x_held_out_positions__mutmut_(11|19)", "equivalent: a sample of 0 positions is empty"),
    (
        "runtime.reer.judge.x_judge__mutmut_11",
        "equivalent: the loop sets `model` on its first pass, and there are always four plans",
    ),
    ("runtime.reer.plans.x_longest_copied_run__mutmut_(10|22)", "equivalent: one more table cell that is never read"),
    (
        "runtime.reer.plans.x_leak_reason__mutmut_19",
        "equivalent: a post with no content word has fewer than MIN_CONTENT_WORDS, so the share is not judged",
    ),
    ("bus.cluster.x_bucket__mutmut_6", "equivalent: NATS keeps one revision per key by default"),
    ("bus.cluster.xǁLeaseǁ_take_back__mutmut_31", "equivalent: a revision read back from the server is never 0"),
    (
        "bus.cluster.xǁSharedSpacingǁacquire__mutmut_15",
        "equivalent: with no slot taken yet, the next slot is now, whether the last was at 0 s or 1 s of the epoch",
    ),
    ("actors.limiter.xǁLimiterǁ__init____mutmut_25", "equivalent: local spacing is the parameter's default"),
    (
        "runtime.providers.gate.xǁCircuitǁallows__mutmut_6",
        "equivalent but at one instant: the reset time passed exactly (a float clock)",
    ),
    # only what is logged changes: through_outage's first argument names the request in its log lines
    (
        r"bus\.cluster\.(xǁLeaseǁkeep__mutmut_6|xǁLeaseǁ_take_back__mutmut_(2|14)"
        r"|x_coordinator_present__mutmut_(2|14)|x_announce__mutmut_15)",
        "log only: the label of the request in the outage log",
    ),
    # telemetry outside the run's test selection (tests/runtime/test_telemetry.py, test_metrics.py)
    (
        "actors.limiter.xǁLimiterǁ__init____mutmut_2[89]",
        "telemetry: the circuit-state gauge, tested by test_metrics.py",
    ),
    ("actors.limiter.xǁLimiterǁcall__mutmut_(28|30)", "telemetry: the fallback event's attributes"),
    (
        "actors.limiter.xǁLimiterǁ_once__mutmut_(49|50|54|56)",
        "telemetry: how the span records an exception (the Limiter sets the status itself)",
    ),
    ("actors.limiter.xǁLimiterǁ_once__mutmut_(88|98|115|140)", "telemetry: the provider label of the calls counter"),
    ("actors.limiter.xǁLimiterǁ_once__mutmut_(165|174)", "telemetry: the token usage histogram and span attributes"),
    ("actors.limiter.xǁLimiterǁ_failed__mutmut_2[678]", "telemetry: the outcome label of the calls counter"),
    # timing and races the tests cannot make happen on demand
    (
        "bus.cluster.x_announce__mutmut_(27|28|29|30)",
        "timing: the goodbye's shield and 2 s bound only matter when the delete is slow during a cancel",
    ),
    ("bus.cluster.x_present__mutmut_13", "race: a key that expires between the listing and the read"),
    (
        "actors.limiter.xǁLimiterǁ__init____mutmut_1",
        "a bound of 64 calls in flight against 65: seen only with more than 64 at once",
    ),
    ("runtime.store.xǁJsonlStoreǁ_write__mutmut_14", "only when the truncate after a failed write fails too"),
]
"""Logic survivors read and explained: a regular expression over the mutant's whole name, and why."""


def explanation(name: str) -> str | None:
    """Why the survivor `name` is left, if it was explained."""
    return next((why for pattern, why in EXPLAINED if re.fullmatch(pattern, name)), None)


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
            reason = f" — {explanation(mutant) or 'NOT EXPLAINED'}" if name == "logic" else ""
            print(f"- `{mutant}` ({status}): `{shown}`{reason}")
        print()


if __name__ == "__main__":
    sys.exit(main())
