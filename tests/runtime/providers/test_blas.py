"""The BLAS under MLX is chosen by what the CPU runs: never a library that dies of SIGILL.

The emulated-CPU test runs the `mlx://` provider under QEMU's user-mode emulator as a Haswell
(AVX2, no AVX-512), which `scripts/setup.sh test` installs, beside the same on the host CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.providers.local import blas
from tests.conftest import ROOT

HASWELL = frozenset({"SSE2", "SSE3", "SSE41", "SSE42", "AVX", "AVX2", "FMA3", "F16C"})
SKYLAKE_X = HASWELL | {"AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"}
X86_LINUX = sys.platform == "linux" and os.uname().machine == "x86_64"


@pytest.mark.parametrize(
    ("config", "features", "machine", "refused"),
    [
        ("OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4", HASWELL, "x86_64", "needs AVX512F, AVX512BW"),
        ("OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4", SKYLAKE_X, "x86_64", None),
        ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64", frozenset(), "x86_64", None),
        ("OpenBLAS 0.3.26 HASWELL MAX_THREADS=64", HASWELL, "x86_64", None),
        ("OpenBLAS 0.3.26 HASWELL MAX_THREADS=64", frozenset({"SSE2", "AVX"}), "x86_64", "needs AVX2, FMA3"),
        ("OpenBLAS 0.3.26 NEHALEM MAX_THREADS=64", frozenset({"SSE2"}), "x86_64", None),
        ("OpenBLAS 0.3.26 ARMV8 MAX_THREADS=64", HASWELL, "x86_64", "built for ARMV8, a aarch64 CPU"),
        ("OpenBLAS 0.3.26 NEOVERSEV1 MAX_THREADS=64", frozenset({"ASIMD"}), "aarch64", "needs SVE"),
        ("OpenBLAS 0.4.0 SOMEFUTURECHIP MAX_THREADS=8", SKYLAKE_X, "x86_64", "not known here"),
    ],
)
def test_a_library_is_refused_when_its_cpu_family_needs_what_the_cpu_lacks(
    config: str, features: frozenset[str], machine: str, refused: str | None
) -> None:
    reason = blas.missing_instructions(config, features, machine)
    assert reason is None if refused is None else refused in (reason or "")


def test_the_threads_a_library_was_built_for_are_read_from_its_config() -> None:
    assert blas.threads_cap("OpenBLAS 0.3.31 NO_AFFINITY SKYLAKEX MAX_THREADS=4") == 4
    assert blas.threads_cap("OpenBLAS 0.3.21 DYNAMIC_ARCH Zen") > 1024


def choose(candidates: str, features: str, cores: int | None = None) -> dict[str, object]:
    """`blas.prepare()` in a fresh process, with its candidates, CPU features and core count replaced."""
    code = f"""
import importlib.util, json, os, sys
if {cores!r} is not None:
    os.cpu_count = lambda: {cores!r}
from pathlib import Path
spec = importlib.util.spec_from_file_location("blas", "runtime/providers/local/blas.py")  # not the package,
blas = sys.modules["blas"] = importlib.util.module_from_spec(spec)  # whose import chooses a BLAS already
spec.loader.exec_module(blas)
blas.candidates = lambda: [(s, Path(p)) for s, p in {candidates}]
blas.cpu_features = lambda: frozenset({features})
status = blas.prepare()
import mlx.core as mx
a = mx.ones((64, 64))
print(json.dumps({{"name": status.name, "fast": status.fast, "detail": status.detail,
                  "passed_over": status.passed_over, "product": (a @ a)[0, 0].item()}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(sys.platform != "linux", reason="MLX uses Accelerate or Metal off Linux: no BLAS is chosen")
def test_with_no_library_this_cpu_runs_the_model_takes_the_slow_path_and_says_why() -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6" if X86_LINUX else "/lib/aarch64-linux-gnu/libc.so.6"
    cmeel = [("cmeel-openblas", str(p)) for s, p in blas.candidates() if s == "cmeel-openblas"]
    assert cmeel, "the cmeel-openblas wheel is a dependency on Linux: run scripts/setup.sh test"
    result = choose(repr([*cmeel, ("not a BLAS", libc)]), repr(sorted(HASWELL)))
    assert result["name"] == "bundled reference BLAS" and result["fast"] is False
    assert "no OpenBLAS that this CPU can run" in str(result["detail"])
    refused = [str(line) for line in result["passed_over"]]  # type: ignore[attr-defined]
    assert any("cmeel-openblas" in line and "needs AVX512F" in line for line in refused)
    assert any(line.startswith("not a BLAS") and "cannot use it" in line for line in refused)
    assert result["product"] == 64.0  # and MLX still computes, on its own BLAS


@pytest.mark.skipif(sys.platform != "linux", reason="MLX uses Accelerate or Metal off Linux: no BLAS is chosen")
@pytest.mark.parametrize(("cores", "chosen"), [(2, "cmeel-openblas"), (64, "system")])
def test_a_real_library_capped_below_the_core_count_comes_after_one_that_is_not(cores: int, chosen: str) -> None:
    """The two real libraries, both usable: cmeel's is capped at 4 threads, the system's is not."""
    found = dict(blas.candidates())
    assert "system" in found, "no system OpenBLAS: scripts/setup.sh installs Debian's libopenblas0-pthread"
    if (failure := blas.probe(found["cmeel-openblas"])[1]) is not None:
        pytest.skip(f"this CPU cannot run cmeel-openblas's build ({failure}): only one library is usable")
    assert blas.threads_cap(blas.probe(found["cmeel-openblas"])[0]) == 4
    both = repr([("cmeel-openblas", str(found["cmeel-openblas"])), ("system", str(found["system"]))])
    result = choose(both, repr(sorted(SKYLAKE_X | {"ASIMD"})), cores)
    assert result["name"] == f"OpenBLAS ({chosen})" and result["fast"] is True and result["product"] == 64.0
    assert f"on {cores} core(s)" in str(result["detail"])


@pytest.mark.parametrize(("cores", "chosen"), [(2, "capped"), (4, "capped"), (8, "uncapped"), (64, "uncapped")])
def test_the_chooser_puts_a_library_capped_below_the_cores_after_one_that_is_not(cores: int, chosen: str) -> None:
    capped = ("capped", Path("/capped.so"), "OpenBLAS 0.3.28 DYNAMIC_ARCH MAX_THREADS=4")
    uncapped = ("uncapped", Path("/uncapped.so"), "OpenBLAS 0.3.28 DYNAMIC_ARCH MAX_THREADS=64")
    assert blas.pick([capped, uncapped], cores)[0] == chosen  # the capped one is found first
    unsaid = ("unsaid", Path("/unsaid.so"), "OpenBLAS 0.3.28 Haswell")  # no cap in its config: none
    assert blas.pick([capped, unsaid], cores)[0] == ("capped" if cores <= 4 else "unsaid")
    assert blas.pick([uncapped, capped], cores)[0] == "uncapped"  # neither idles cores: the first found


def run_scoring(tiny: Path, *emulator: str) -> dict[str, object]:
    done = subprocess.run(
        [*emulator, sys.executable, "-m", "tests.score_on_cpu", str(tiny)],  # as a module: tests/runtime is not runtime
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(not X86_LINUX, reason="emulates an x86-64 CPU without AVX-512 (QEMU user mode, Linux)")
def test_the_model_scores_the_same_on_a_cpu_without_avx512_as_on_this_one(tiny: Path) -> None:
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "QEMU's user-mode emulator is missing: scripts/setup.sh test installs Debian's qemu-user"
    cmeel = next(path for source, path in blas.candidates() if source == "cmeel-openblas")
    # The premise, from the lock: cmeel-openblas's wheel is built for SKYLAKEX alone (no DYNAMIC_ARCH).
    config = blas.probe(cmeel)[0]
    assert "SKYLAKEX" in config and "DYNAMIC_ARCH" not in config, f"the locked cmeel-openblas changed: {config}"
    # So the hazard is real under the emulator: that build dies of SIGILL on its first product.
    crashed = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-I", "-S", "-c", blas.PROBE, str(cmeel)],
        capture_output=True,
        check=False,
    )
    assert crashed.returncode == -4, crashed.returncode

    host = run_scoring(tiny)
    haswell = run_scoring(tiny, qemu, "-cpu", "Haswell")
    assert host["blas"] != "bundled reference BLAS" and haswell["blas"] == "OpenBLAS (system)"
    assert "Haswell" in str(haswell["detail"])  # the system library's kernels chosen for the emulated CPU
    assert any("cmeel-openblas" in line and "AVX512F" in line for line in haswell["passed_over"])  # type: ignore[attr-defined]
    assert haswell["engine"] == host["engine"] == "engine numpy"  # numpy's own OpenBLAS picks its kernels too
    assert haswell["logprobs"] == pytest.approx(host["logprobs"], abs=1e-4)
