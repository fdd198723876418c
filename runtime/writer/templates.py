"""Writing templates: the kinds of writing people ask for, each run as a `WriterProgram` program of its own.

A template is data: the writing step's instructions, the texts it reads beyond the brief, whether a
plan comes first, whether it writes a thread. The four below ship; users add theirs in `config.toml`
(`[[templates]]`) or from Python. Each is compiled, stored and promoted on its own.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.errors import UsageError
from runtime.records import GenerateEvent

DEFAULT = "content_generation"
_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class Template(BaseModel):
    """A named writing program, described by what it writes and reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME, description="lower case letters, digits and _")
    description: str = ""
    instructions: str = Field(min_length=1, description="what the writing step is told to do")
    inputs: tuple[str, ...] = Field((), description="texts the writing step reads beside the brief")
    plan: bool = Field(True, description="plan the post first (a strategy, like a mined plan), then write it")
    thread: bool = Field(False, description="writes a thread: asks for two posts or more")

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, inputs: tuple[str, ...]) -> tuple[str, ...]:
        for name in inputs:
            if not re.fullmatch(_NAME, name) or name in ("brief", "plan", "post"):
                raise ValueError(f"input {name!r}: lower case letters, digits and _, and not brief, plan or post")
        if len(set(inputs)) != len(inputs):
            raise ValueError("an input is named twice")
        return inputs

    def check(self, given: dict[str, str], thread_size: int) -> None:
        """Refuse texts the template does not read, a text it reads that is missing or empty, and a
        single post asked of a thread template."""
        if self.thread and thread_size < 2:
            raise UsageError(f"template {self.name} writes threads: ask for 2 posts or more (thread size)")
        if unknown := sorted(set(given) - set(self.inputs)):
            reads = ", ".join(self.inputs) or "nothing beside the brief"
            raise UsageError(f"template {self.name} reads {reads}; it has no input {unknown[0]!r}")
        if missing := [name for name in self.inputs if not given.get(name, "").strip()]:
            raise UsageError(f"template {self.name} needs the text {missing[0]!r} (give it as {missing[0]}=TEXT)")


_WRITE = (
    "Write the post the plan describes, for the brief. For a thread, put a line holding only --- between its posts."
)
SHIPPED: tuple[Template, ...] = (
    Template(name=DEFAULT, description="a single post: plan it, then write it", instructions=_WRITE),
    Template(
        name="thread",
        description="a thread: plan it, then write its posts",
        instructions=_WRITE,
        thread=True,
    ),
    Template(
        name="reply",
        description="a reply to a post",
        instructions="Write a reply to the post, for the brief: one point the post did not make, in a friendly voice.",
        inputs=("post_replied_to",),
        plan=False,
    ),
    Template(
        name="repurpose",
        description="a post made from a long text",
        instructions="Turn the long text into a post for the brief: the one idea a reader should keep, "
        "in the brief's style.",
        inputs=("source_text",),
        plan=False,
    ),
)


def catalogue(added: list[Template] | tuple[Template, ...] = ()) -> dict[str, Template]:
    """The shipped templates and `added` ones, by name; an added one may not reuse a name."""
    found = {t.name: t for t in SHIPPED}
    for template in added:
        if template.name in found:
            raise UsageError(f"template {template.name!r} is defined twice (shipped: {', '.join(sorted(found))})")
        found[template.name] = template
    return found


def lookup(templates: dict[str, Template], name: str) -> Template:
    """The template called `name`, or a `UsageError` that lists the known ones."""
    if name not in templates:
        raise UsageError(f"no template {name!r}; the templates are {', '.join(sorted(templates))}")
    return templates[name]


def checked(templates: dict[str, Template], request: GenerateEvent) -> Template:
    """The template `request` names, checked against the texts and thread size it gives."""
    template = lookup(templates, request.template)
    template.check(request.texts, request.thread_size)
    return template
