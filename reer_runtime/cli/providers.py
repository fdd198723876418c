"""`reer-runtime providers`: the models this machine can use, and which of them can score."""

from __future__ import annotations

import argparse

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "providers",
        parents=[common],
        help="list the models this machine can use, and which can score (mine) or only generate",
        description="List the packaged model and the device MLX runs it on (Metal on Apple Silicon, CUDA with "
        "mlx[cuda12] or mlx[cuda13], else the CPU), OpenAI-compatible servers answering on a configured "
        "openai:// address or on 127.0.0.1:8000 (vLLM) or :8080 (llama.cpp), and the cloud chat APIs whose key "
        "is set (OPENAI_API_KEY, ANTHROPIC_API_KEY, TOGETHER_API_KEY). Nothing is changed: the default model "
        "stays the packaged one.",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.providers.detect import detect

    settings = load_settings(_options.data_dir(args), args.config)
    print(f"{'model':<56} {'can':<16} how")
    for found in detect([*settings.generator, *settings.scorer]):
        can = ("score+generate" if found.scores else "generate only") if found.usable else "unusable"
        print(f"{found.uri:<56} {can:<16} {found.how}")
    return 0
