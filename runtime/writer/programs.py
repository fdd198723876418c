"""The compiled programs of a data dir: `programs/v{N}.json` (DSPy's own JSON) and their index.

Versions are numbered across templates; each template has its own current program."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import Refused
from runtime.records import Program
from runtime.store import JsonlStore
from runtime.writer.program import WriterProgram
from runtime.writer.templates import Template


class Programs:
    """Saved programs and `index.jsonl`, one `Program` record each; a template's newest promoted one is
    its current program."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = JsonlStore(folder / "index.jsonl", Program)

    def records(self) -> list[Program]:
        return list(self.index.read()) if self.index.path.exists() else []

    def current(self, template: str) -> Program | None:
        """The newest promoted program of `template`, or None while only the uncompiled one exists."""
        return next((r for r in reversed(self.records()) if r.promoted and r.template == template), None)

    def chosen(self, template: str, version: int | None) -> Program | None:
        """Program `version` of `template` (0: the uncompiled one, None), whether or not it was
        promoted; with no version, the current one. `Refused` if the data dir has no such program."""
        if version is None:
            return self.current(template)
        if version == 0:
            return None
        found = next((r for r in self.records() if r.version == version), None)
        if found is None or found.template != template:
            raise Refused(
                f"no program v{version} of template {template} (reer-runtime templates lists the current ones)"
            )
        return found

    def path(self, version: int) -> Path:
        return self.folder / f"v{version}.json"

    def load(self, record: Program | None, template: Template) -> WriterProgram:
        """The program of `record`, read with plain DSPy (`WriterProgram(template).load`); None gives the
        uncompiled one."""
        program = WriterProgram(template)
        if record is not None:
            program.load(str(self.path(record.version)))
        return program

    def save(self, program: WriterProgram, version: int) -> None:
        """Write the program's file durably (written aside, fsynced, then renamed into place)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.path(version)
        partial = self.folder / f".v{version}.partial.json"
        program.save(str(partial))
        partial.chmod(0o600)  # DSPy writes it as the umask allows
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        partial.replace(final)
