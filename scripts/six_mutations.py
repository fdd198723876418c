"""Break on purpose the six features the suite once missed (issue #33), and show a test now fails.

Each mutation is applied to a scratch copy of the tracked files; the tests named for it run there
(`python -m pytest` from the copy, so the copy's packages are the ones imported), and the result is
reported. Exit 0 when every mutation is caught.

    .venv/bin/python scripts/six_mutations.py          # all six, about 4 minutes on 2 cores
    .venv/bin/python scripts/six_mutations.py dummy    # those whose name holds "dummy"
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Mutation(NamedTuple):
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


SIX = [
    Mutation(
        "shared spacing does not wait for its slot",
        "bus/cluster.py",
        "await anyio.sleep(slot - now)",
        "pass",
        ("tests/runtime/test_cluster_state.py::test_a_rate_limit_spaces_the_calls_of_every_process_together",),
    ),
    Mutation(
        "BLAS: the first usable library, whatever its thread cap",
        "runtime/providers/local/blas.py",
        "return min(usable, key=lambda u: threads_cap(u[2]) < cores)",
        "return usable[0]",
        ("tests/runtime/providers/test_blas.py",),
    ),
    Mutation(
        "the optimizer promotes every compile",
        "actors/optimizer.py",
        "score, promoted = done.score, done.promoted",
        "score, promoted = done.score, True",
        ("tests/runtime/writer/test_writer.py::test_a_compile_is_promoted_only_when_it_beats_the_current_program",),
    ),
    Mutation(
        "drafts scored against the worst mined post",
        "actors/generator.py",
        "lambda: max(self._traces.read(), key=lambda t: t.engagement, default=None)",
        "lambda: min(self._traces.read(), key=lambda t: t.engagement, default=None)",
        (
            "tests/runtime/writer/test_writer.py::test_optimize_then_generate_uses_the_promoted_program_without_a_restart",
        ),
    ),
    Mutation(
        "the search takes no refinement step",
        "runtime/reer/search.py",
        "for name in list(sections)[: s.max_steps]:",
        "for name in list(sections)[:0]:",
        ("tests/runtime/reer/test_search.py",),
    ),
    Mutation(
        "the dummy model's scores ignore the context",
        "runtime/providers/dummy.py",
        "logprobs = await anyio.to_thread.run_sync(self._model.score, context, call.target.encode())",
        "logprobs = [-1.0] * len(call.target.encode())",
        ("tests/runtime/providers/test_dummy.py",),
    ),
]


def scratch_copy(into: Path) -> None:
    """The tracked files of the checkout, as they are now (uncommitted edits included)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = ROOT / name, into / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run(mutation: Mutation) -> tuple[bool, str]:
    """Whether a named test failed (not errored) with `mutation` applied, and pytest's summary line
    with the first line of the failure."""
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        copy = Path(scratch)
        scratch_copy(copy)
        target = copy / mutation.path
        text = target.read_text()
        if text.count(mutation.old) != 1:
            sys.exit(f"{mutation.path}: the code to break is no longer there once: {mutation.old!r}")
        target.write_text(text.replace(mutation.old, mutation.new))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-n", "0", *mutation.tests],
            cwd=copy,
            capture_output=True,
            text=True,
            check=False,
        )
        said = done.stdout.strip().splitlines() or ["(no output)"]
        why = next((line.strip() for line in said if line.startswith("E ")), "")  # the first failed assertion
        return done.returncode == 1 and " error" not in said[-1], f"{said[-1]}; {why[:160]}"


def main() -> int:
    chosen = [m for m in SIX if not sys.argv[1:] or any(word in m.name for word in sys.argv[1:])]
    missed = 0
    for mutation in chosen:
        started = time.monotonic()
        caught, summary = run(mutation)
        missed += not caught
        verdict = "caught" if caught else "MISSED"
        print(f"{verdict:7} {mutation.name} ({mutation.path}; {time.monotonic() - started:.0f} s): {summary}")
    print(f"{len(chosen) - missed} of {len(chosen)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
