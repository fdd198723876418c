"""Choose the BLAS that MLX on a Linux CPU runs on, by what this CPU can execute.

The `mlx-cpu` wheel bundles a reference BLAS that runs a float32 matmul at a few GFLOP/s. Loading
an OpenBLAS into the process with global symbols before `mlx.core` is imported makes MLX's BLAS
calls resolve to it, 20-50 times faster. But an OpenBLAS built for one CPU family dies with SIGILL
on another: the `cmeel-openblas` wheel is built for SKYLAKEX (AVX-512) only. So each candidate
(that wheel, then the system's OpenBLAS from `ldconfig`, which on Debian and Ubuntu is built with
`DYNAMIC_ARCH` and picks its kernels at run time) is taken only if

1. the CPU family it was built for (its `openblas_get_config()` string) needs no instruction
   missing from this CPU, as CPUID reports it to this process (through numpy, so that an emulated
   CPU is seen as emulated), and
2. a small product run with it in a child process gives the right answer.

Otherwise the next is tried, and the last resort is the slow bundled BLAS, with a warning.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# The CPU families OpenBLAS builds for (its TARGET names), by the instructions their kernels use,
# as numpy names CPU features. Families in `BASELINE` need nothing beyond their architecture's
# baseline (x86-64's SSE2, arm64's ASIMD); a family in neither is not known here and is refused.
NEEDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(["SKYLAKEX", "COOPERLAKE"], ("AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512CD")),
    "SAPPHIRERAPIDS": ("AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512CD", "AVX512BF16"),
    **dict.fromkeys(["HASWELL", "ZEN"], ("AVX2", "FMA3")),
    **dict.fromkeys(["SANDYBRIDGE", "BULLDOZER"], ("AVX",)),
    **dict.fromkeys(["PILEDRIVER", "STEAMROLLER", "EXCAVATOR"], ("AVX", "FMA3")),
    **dict.fromkeys(["NEOVERSEV1", "NEOVERSEN2", "NEOVERSEV2", "ARMV8SVE", "ARMV9SME", "A64FX"], ("SVE",)),
}
BASELINE = {
    "x86_64": {"PRESCOTT", "CORE2", "PENRYN", "DUNNINGTON", "NEHALEM", "ATOM", "OPTERON", "BARCELONA", "BOBCAT"},
    "aarch64": {
        "ARMV8",
        "CORTEXA53",
        "CORTEXA55",
        "CORTEXA57",
        "CORTEXA72",
        "CORTEXA73",
        "NEOVERSEN1",
        "THUNDERX",
        "THUNDERX2T99",
        "THUNDERX3T110",
        "TSV110",
        "EMAG8180",
        "FALKOR",
        "VORTEX",
    },
}

PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.openblas_get_config.restype = ctypes.c_char_p
print(lib.openblas_get_config().decode(), flush=True)
a = (ctypes.c_float * 64)(*[float(i % 7) for i in range(64)])
b = (ctypes.c_float * 64)(*[float(i % 5) for i in range(64)])
c = (ctypes.c_float * 64)()
lib.cblas_sgemm(101, 111, 111, 8, 8, 8, ctypes.c_float(1.0), a, 8, b, 8, ctypes.c_float(0.0), c, 8)
want = [sum(a[i * 8 + k] * b[k * 8 + j] for k in range(8)) for i in range(8) for j in range(8)]
sys.exit(0 if list(c) == want else 3)
"""
"""Run in a child process: print the library's config string, then check one 8x8 float32 product."""


@dataclass(frozen=True)
class BlasStatus:
    """Which BLAS MLX uses in this process, and why."""

    name: str
    detail: str
    fast: bool
    threads: int = 0
    """Threads the BLAS runs products on (0: not known)."""
    passed_over: tuple[str, ...] = field(default=())
    """Each candidate that was not taken, with the reason."""


def cpu_features() -> frozenset[str]:
    """The instruction-set features CPUID reports to this process, as numpy names them."""
    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # numpy 1.x
        umath = importlib.import_module("numpy.core._multiarray_umath")
    features: dict[str, bool] = umath.__cpu_features__
    return frozenset(name for name, present in features.items() if present)


def missing_instructions(config: str, features: frozenset[str], machine: str) -> str | None:
    """Why a library with this `openblas_get_config()` string cannot run here, or None if it can."""
    words = config.split()
    if "DYNAMIC_ARCH" in words:
        return None
    family = next((w for w in words if w in NEEDS or any(w in known for known in BASELINE.values())), None)
    if family is None:
        return f"built for a CPU family not known here ({config!r})"
    if family in NEEDS:
        if lacking := [f for f in NEEDS[family] if f not in features]:
            return f"built for {family} only, which needs {', '.join(lacking)}, not on this CPU"
        return None
    if family not in BASELINE.get(machine, set()):
        return f"built for {family}, a {'/'.join(a for a, s in BASELINE.items() if family in s)} CPU"
    return None


def candidates() -> list[tuple[str, Path]]:
    """OpenBLAS libraries to try, best first: the `cmeel-openblas` wheel's, then the system's."""
    found = [("cmeel-openblas", Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "lib" / "libopenblas.so.0")]
    try:
        listing = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        listing = ""
    found += [("system", Path(p)) for p in re.findall(r"^\s*libopenblas\.so\.0 \(.*\) => (\S+)$", listing, re.M)]
    return [(source, path) for source, path in found if path.is_file()]


def probe(path: Path) -> tuple[str, str | None]:
    """The library's config string, read in a child process, and why a product with it failed
    there (None if it was right). The library is never loaded into this process here."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(path)], capture_output=True, check=False)
    config = done.stdout.decode(errors="replace").strip()
    if done.returncode == 0:
        return config, None
    if done.returncode < 0:
        return config, f"a test product with it died of signal {-done.returncode}"
    error = done.stderr.decode(errors="replace").strip().splitlines()
    return config, f"cannot use it (exit {done.returncode}): {error[-1] if error else 'no message'}"


@cache
def prepare() -> BlasStatus:
    """Load the best OpenBLAS this CPU runs ahead of MLX (once); call before the first `import mlx.core`."""
    if sys.platform != "linux":
        return BlasStatus("platform default", f"{sys.platform}: MLX uses Metal or Accelerate", True)
    if "mlx.core" in sys.modules:
        return BlasStatus("bundled reference BLAS", "mlx.core was imported before OpenBLAS could be loaded", False)
    features, machine, cores = cpu_features(), os.uname().machine, os.cpu_count() or 1
    passed_over: list[str] = []
    usable: list[tuple[str, Path, str]] = []
    for source, path in candidates():
        config, failure = probe(path)
        # The build's CPU family decides first: under an emulated CPU the child runs on the real one.
        if reason := (missing_instructions(config, features, machine) if config else None) or failure:
            passed_over.append(f"{source} {path}: {reason}")
        else:
            usable.append((source, path, config))
    if not usable:
        return BlasStatus(
            "bundled reference BLAS",
            "no OpenBLAS that this CPU can run was found; run scripts/setup.sh, or install the system's "
            "OpenBLAS (Debian and Ubuntu: libopenblas0-pthread)",
            False,
            passed_over=tuple(passed_over),
        )
    source, path, _ = pick(usable, cores)
    lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    lib.openblas_get_config.restype = ctypes.c_char_p
    config, threads = lib.openblas_get_config().decode(), int(lib.openblas_get_num_threads())
    return BlasStatus(
        f"OpenBLAS ({source})",
        f"{path}: {config}, {threads} thread(s) on {cores} core(s)",
        True,
        threads,
        tuple(passed_over),
    )


def pick(usable: list[tuple[str, Path, str]], cores: int) -> tuple[str, Path, str]:
    """The library to load among `usable` (source, path, config), in the order found: fewer threads
    than cores leaves cores idle, so a library capped below them comes after one that is not."""
    return min(usable, key=lambda u: threads_cap(u[2]) < cores)


def threads_cap(config: str) -> int:
    """The `MAX_THREADS` a library was built with, from its config string (a large number if unsaid)."""
    found = re.search(r"MAX_THREADS=(\d+)", config)
    return int(found.group(1)) if found else 1 << 16


def measure_gflops(size: int = 512, repeat: int = 10) -> float:
    """Float32 matmul speed of MLX in this process, in GFLOP/s."""
    import mlx.core as mx

    a = mx.random.normal((size, size))
    mx.eval(a @ a)
    started = time.perf_counter()
    for _ in range(repeat):
        mx.eval(a @ a)
    return repeat * 2 * size**3 / (time.perf_counter() - started) / 1e9
