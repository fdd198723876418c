"""Keep MLX on Linux CPU off the reference BLAS its `mlx-cpu` wheel bundles.

That BLAS runs a float32 matmul at a few GFLOP/s. Loading OpenBLAS (the `cmeel-openblas` wheel)
into the process with global symbols before `mlx.core` is imported makes MLX's BLAS calls resolve
to it, 20-50 times faster. It needs the system's `libgfortran.so.5`, which `scripts/setup.sh`
installs on Debian and Ubuntu.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class BlasStatus:
    """Which BLAS MLX uses in this process, and why."""

    name: str
    detail: str
    fast: bool


def openblas_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "lib" / "libopenblas.so.0"


@cache
def prepare() -> BlasStatus:
    """Load OpenBLAS ahead of MLX when that matters (once); call before the first `import mlx.core`."""
    if sys.platform != "linux":
        return BlasStatus("platform default", f"{sys.platform}: MLX uses Metal or Accelerate", True)
    if "mlx.core" in sys.modules:
        return BlasStatus("bundled reference BLAS", "mlx.core was imported before OpenBLAS could be loaded", False)
    path = openblas_path()
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        return BlasStatus(
            "bundled reference BLAS",
            f"cannot load OpenBLAS ({exc}); run scripts/setup.sh, or install cmeel-openblas and "
            "the system's libgfortran5",
            False,
        )
    return BlasStatus("OpenBLAS", str(path), True)


def measure_gflops(size: int = 512, repeat: int = 10) -> float:
    """Float32 matmul speed of MLX in this process, in GFLOP/s."""
    import mlx.core as mx

    a = mx.random.normal((size, size))
    mx.eval(a @ a)
    started = time.perf_counter()
    for _ in range(repeat):
        mx.eval(a @ a)
    return repeat * 2 * size**3 / (time.perf_counter() - started) / 1e9
