"""`reer-runtime templates`: the writing templates, what each reads, and its current program."""

from __future__ import annotations

from runtime.config import Settings
from runtime.writer.programs import Programs


def print_templates(settings: Settings) -> int:
    """Print each template (shipped, then configured) with its inputs and its promoted program."""
    programs = Programs(settings.data_dir / "programs")
    print(f"{'template':<20} {'program':<10} {'reads':<24} description")
    for template in settings.writing_templates().values():
        current = programs.current(template.name)
        version = f"v{current.version}" if current else "uncompiled"
        reads = ", ".join(["brief", *template.inputs])
        print(f"{template.name:<20} {version:<10} {reads:<24} {template.description}")
    return 0
