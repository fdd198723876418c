"""`reer-runtime templates`: the writing templates, what each reads, and its current program."""

from __future__ import annotations

from pathlib import Path

from runtime.config import load_settings
from runtime.writer.programs import Programs


def print_templates(data_dir: Path) -> int:
    """Print each template (shipped, then configured) with its inputs and its promoted program."""
    programs = Programs(data_dir / "programs")
    print(f"{'template':<20} {'program':<10} {'reads':<24} description")
    for template in load_settings(data_dir).writing_templates().values():
        current = programs.current(template.name)
        version = f"v{current.version}" if current else "uncompiled"
        reads = ", ".join(["brief", *template.inputs])
        print(f"{template.name:<20} {version:<10} {reads:<24} {template.description}")
    return 0
