"""The writer program: plan the post (a strategy, like a mined `z`), then write it."""

from __future__ import annotations

import re
from typing import Any

import dspy

from runtime.records import GenerateEvent, Trace
from runtime.reer.plans import content_tokens
from runtime.reer.prompts import SECTIONS
from runtime.writer.templates import SHIPPED, Template

THREAD_BREAK = "---"
PLAN_TOKENS = 160
"""The longest plan: five lines of about thirty tokens. A longer one has left its sections."""


class PlanPost(dspy.Signature):
    """Plan a social media post for the brief, as a skilled writer would before writing it: one line
    for each section, in the first person and the future tense."""

    brief: str = dspy.InputField(desc="the platform and its limits, the topic, the audience and the style")
    plan: str = dspy.OutputField(desc="one line per section: " + "; ".join(f"{k}: {v}" for k, v in SECTIONS.items()))


def write_signature(template: Template) -> type[dspy.Signature]:
    """The writing step of `template`: the brief, its plan if it plans, its texts → the post."""
    fields: dict[str, tuple[type, Any]] = {"brief": (str, dspy.InputField())}
    if template.plan:
        fields["plan"] = (str, dspy.InputField())
    fields |= {name: (str, dspy.InputField()) for name in template.inputs}
    fields["post"] = (str, dspy.OutputField(desc="the text to publish, nothing else"))
    signature: type[dspy.Signature] = dspy.make_signature(fields, template.instructions, signature_name="WritePost")
    return signature


class WriterProgram(dspy.Module):
    """Brief (and the template's texts) → plan → post, for one template (`content_generation` by
    default). Its demonstrations and instructions are what the optimizers tune."""

    def __init__(self, template: Template = SHIPPED[0]) -> None:
        super().__init__()
        self.template = template
        if template.plan:
            self.plan = dspy.Predict(PlanPost)
        self.write = dspy.Predict(write_signature(template))

    def forward(self, brief: str, max_post_tokens: int | None = None, **texts: str) -> dspy.Prediction:
        """Plan (if the template does), then write; `max_post_tokens` bounds the writing step (the
        platform's limit); `texts` are the template's inputs."""
        plan = ""
        if self.template.plan:
            longest = min(PLAN_TOKENS, dspy.settings.lm.kwargs.get("max_tokens", PLAN_TOKENS))
            plan = self.plan(brief=brief, config={"max_tokens": longest}).plan
        planned = {"plan": plan} if self.template.plan else {}
        bound = {"config": {"max_tokens": max_post_tokens}} if max_post_tokens else {}
        return dspy.Prediction(plan=plan, post=self.write(brief=brief, **planned, **texts, **bound).post)


BRIEF_LABELS = ("Topic", "Audience", "Style", "Key message", "Call to action")
"""The labelled parts of a brief, in order."""


def render_brief(request: GenerateEvent) -> str:
    """The brief as the program reads it; it opens like the briefs mined from posts."""
    limit = request.platform.max_chars
    size = f"a thread of {request.thread_size} posts, each" if request.thread_size > 1 else "a post"
    text = f"Write a {request.length} post for {request.platform.value} as {size} at most {limit} characters."
    text += f" {BRIEF_LABELS[0]}: {request.topic}."
    values = [request.audience, request.style, request.key_message, request.call_to_action]
    for label, value in zip(BRIEF_LABELS[1:], values, strict=True):
        if value:
            text += f" {label}: {value}."
    return text


TOPIC_WORDS = 5
_LINK = re.compile(r"https?://\S+")


def mined_topic(post: str) -> str:
    """A topic for a mined post's training brief: its first `TOPIC_WORDS` distinct content words,
    links left out ("" when it has none).

    The brief mined with a post describes its form, never its words (the search must not be handed
    the post). A user's brief names a topic, so the writer's demonstrations need one too: without it
    they show posts that follow no topic, and a compiled program learns to write off the topic."""
    return ", ".join(list(dict.fromkeys(content_tokens(_LINK.sub(" ", post))))[:TOPIC_WORDS])


def example(trace: Trace, template: Template = SHIPPED[0]) -> dspy.Example | None:
    """A training example of `template` from a mined trace: brief → plan → post. A template that reads
    a text (a post replied to, a long text) learns from the traces whose post has its `context`, that
    text; with none, or more texts than one, the trace teaches it nothing (None)."""
    texts: dict[str, str] = {}
    if template.inputs:
        if len(template.inputs) > 1 or not trace.post.context:
            return None
        texts = {template.inputs[0]: trace.post.context}
    topic = mined_topic(trace.post.text)
    brief = f"{trace.brief.text} {BRIEF_LABELS[0]}: {topic}." if topic else trace.brief.text
    fields = {"brief": brief, "topic": topic, "plan": trace.plan, "post": trace.post.text, **texts}
    return dspy.Example(**fields, platform=trace.brief.platform.value, trace_id=trace.trace_id).with_inputs(
        "brief", *texts
    )
