"""What every benchmark report says about where it ran: the date, the CPU and its vector
extensions, and the BLAS under MLX and numpy, so figures from different machines are never mixed up."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runtime.providers.local import blas

VECTOR_EXTENSIONS = ("AVX512F", "AVX512BW", "AVX512VL", "AVX512_SPR", "AVX2", "FMA3", "AVX", "ASIMD", "SVE")


def cpu_model() -> str:
    """The processor's marketing name, as the system reports it."""
    if platform.system() == "Darwin":
        done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False)
        return done.stdout.strip() or platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    if "cpu family" in fields:  # virtual machines often hide the name: family 25 is AMD's Zen 3 and 4
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


def cpu_class() -> str:
    """A short name for the kind of CPU, which names each machine's results file: x86_64-avx512, ..."""
    features = blas.cpu_features()
    best = next((f for f in ("AVX512F", "AVX2", "SVE", "ASIMD") if f in features), "baseline")
    return f"{platform.machine().lower()}-{best.removesuffix('F').lower()}"


def provenance() -> dict[str, str]:
    """The date, the machine, its CPU and vector extensions, and the BLAS libraries in use."""
    features = blas.cpu_features()
    status = blas.prepare()
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores",
        "cpu": cpu_model(),
        "cpu_class": cpu_class(),
        "vector_extensions": " ".join(f for f in VECTOR_EXTENSIONS if f in features)
        or "none of " + "/".join(VECTOR_EXTENSIONS),
        "blas": f"{status.name}: {status.detail}",
        "numpy_blas": numpy_blas(),
    }


def numpy_blas() -> str:
    """numpy's version and the BLAS it was built with (the numpy engine runs on it)."""
    library: Any = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return f"numpy {np.__version__}, {library.get('name', '?')} {library.get('version', '')}".strip()
