"""The writer program: plan the post (a strategy, like a mined `z`), then write it."""

from __future__ import annotations

import dspy

from bus.records import GenerateEvent, Trace
from runtime.reer.prompts import SECTIONS

THREAD_BREAK = "---"


class PlanPost(dspy.Signature):
    """Plan a social media post for the brief, as a skilled writer would before writing it: one line
    for each section, in the first person and the future tense."""

    brief: str = dspy.InputField(desc="the platform and its limits, the topic, the audience and the style")
    plan: str = dspy.OutputField(desc="one line per section: " + "; ".join(f"{k}: {v}" for k, v in SECTIONS.items()))


class WritePost(dspy.Signature):
    """Write the post the plan describes, for the brief. For a thread, put a line holding only --- between
    its posts."""

    brief: str = dspy.InputField()
    plan: str = dspy.InputField()
    post: str = dspy.OutputField(desc="the text to publish, nothing else")


class Writer(dspy.Module):
    """Brief → plan → post. Its demonstrations and instructions are what the optimizers tune."""

    def __init__(self) -> None:
        super().__init__()
        self.plan = dspy.Predict(PlanPost)
        self.write = dspy.Predict(WritePost)

    def forward(self, brief: str, max_post_tokens: int | None = None) -> dspy.Prediction:
        """Plan, then write; `max_post_tokens` bounds the writing step (the platform's limit)."""
        plan = self.plan(brief=brief).plan
        bound = {"config": {"max_tokens": max_post_tokens}} if max_post_tokens else {}
        return dspy.Prediction(plan=plan, post=self.write(brief=brief, plan=plan, **bound).post)


def render_brief(request: GenerateEvent) -> str:
    """The brief as the program reads it; it opens like the briefs mined from posts."""
    limit = request.platform.max_chars
    size = f"a thread of {request.thread_size} posts, each" if request.thread_size > 1 else "a post"
    text = f"Write a {request.length} post for {request.platform.value} as {size} at most {limit} characters."
    text += f" Topic: {request.topic}."
    for label, value in [
        ("Audience", request.audience),
        ("Style", request.style),
        ("Key message", request.key_message),
        ("Call to action", request.call_to_action),
    ]:
        if value:
            text += f" {label}: {value}."
    return text


def example(trace: Trace) -> dspy.Example:
    """A training example from a mined trace: brief → plan → post."""
    fields = {"brief": trace.brief.text, "plan": trace.plan, "post": trace.post.text}
    return dspy.Example(**fields, platform=trace.brief.platform.value, trace_id=trace.trace_id).with_inputs("brief")
