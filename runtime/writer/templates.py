"""Writing templates: named DSPy programs for the kinds of writing people ask for.

`content_generation` is the writer program the Generator and the Optimizer use (brief, plan, post);
the others are a thread, a reply and repurposing a long text into posts. Each takes a brief, the
text `render_brief` makes, and returns a `dspy.Prediction` with `plan` and `post`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dspy

from runtime.writer.program import Writer


class ReplyTo(dspy.Signature):
    """Write a reply to the post, for the brief: one point the post did not make, in a friendly voice."""

    brief: str = dspy.InputField()
    post_replied_to: str = dspy.InputField()
    post: str = dspy.OutputField(desc="the reply, nothing else")


class Repurpose(dspy.Signature):
    """Turn the long text into a post for the brief: its one idea a reader should keep, in the brief's style."""

    brief: str = dspy.InputField()
    source_text: str = dspy.InputField()
    post: str = dspy.OutputField(desc="the text to publish, nothing else")


class WriteFrom(dspy.Module):
    """The brief and a text its signature names (a post replied to, a long text), then the post, in one step."""

    def __init__(self, signature: type[dspy.Signature]) -> None:
        super().__init__()
        self.write = dspy.Predict(signature)

    def forward(self, brief: str, **text: str) -> dspy.Prediction:
        return dspy.Prediction(plan="", post=self.write(brief=brief, **text).post)


@dataclass(frozen=True)
class Template:
    """A named writing program: how to make it, and the inputs beyond the brief it reads."""

    name: str
    description: str
    make: Callable[[], dspy.Module]
    inputs: tuple[str, ...] = ()
    thread: bool = False
    """Whether it writes a thread (the brief then asks for `thread_size` posts)."""


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template("content_generation", "a single post: plan it, then write it", Writer),
        Template("thread", "a thread: plan it, then write its posts", Writer, thread=True),
        Template("reply", "a reply to a post", lambda: WriteFrom(ReplyTo), inputs=("post_replied_to",)),
        Template("repurpose", "a post made from a long text", lambda: WriteFrom(Repurpose), inputs=("source_text",)),
    ]
}
"""The templates that ship, by name."""
