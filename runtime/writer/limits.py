"""Platform limits, enforced on every draft: repaired where that keeps the text whole, else refused."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bus.records import MAX_THREAD_POSTS, Features, Platform
from runtime.writer.program import THREAD_BREAK

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_BREAK = re.compile(rf"\n\s*{THREAD_BREAK}-*\s*\n")
_NUMBERING = re.compile(r"^\s*\(?\d+\s*/\s*\d*\)?\s*")


@dataclass(frozen=True)
class Fitted:
    """A draft cut into the platform's posts, with what was repaired, or why it cannot be published."""

    parts: list[str]
    repaired: str | None = None
    rejected: str | None = None


def fit(text: str, platform: Platform, thread_size: int) -> Fitted:
    """Cut `text` into at most `thread_size` posts of at most the platform's limit.

    A post over the limit is split at sentence ends into more posts of the thread when the brief
    allows a thread, and a single post is cut after its last whole sentence within the limit (the
    writing step is bounded in tokens, so a long answer ends mid-sentence anyway); a draft that
    still breaks a limit (a first sentence over it, too many posts) is refused with the reason.
    """
    limit = platform.max_chars
    parts = [_NUMBERING.sub("", p).strip() for p in _BREAK.split(text)]
    parts = [p for p in parts if p]
    if not parts:
        return Fitted([], rejected="empty draft")
    repaired = None
    if thread_size > 1 and any(len(p) > limit for p in parts):
        split = [piece for p in parts for piece in _pack(p, limit)]
        if len(split) != len(parts):
            repaired = f"split posts over {limit} characters at sentence ends ({len(parts)} -> {len(split)} posts)"
        parts = split
    if thread_size == 1 and len(parts) > 1:
        parts, repaired = ["\n\n".join(parts)], "joined a thread into one post, as the brief asked for one"
    if thread_size == 1 and len(parts[0]) > limit and len(kept := _pack(parts[0], limit)[0]) <= limit:
        repaired = f"cut after the last whole sentence within {limit} characters ({len(parts[0])} -> {len(kept)})"
        parts = [kept]
    if too_long := [len(p) for p in parts if len(p) > limit]:
        return Fitted(parts, repaired, f"over the {platform.value} limit: {max(too_long)} characters (at most {limit})")
    most = min(thread_size, MAX_THREAD_POSTS)
    if len(parts) > most:
        return Fitted(parts, repaired, f"a thread of {len(parts)} posts, over the {most} asked for")
    return Fitted(parts, repaired)


def _pack(text: str, limit: int) -> list[str]:
    """Sentences of `text` packed greedily into pieces of at most `limit` characters."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= limit:
            pieces[-1] += " " + sentence
        else:
            pieces.append(sentence)
    return pieces


def features(parts: list[str]) -> Features:
    text = "\n".join(parts)
    return Features(
        chars=sum(len(p) for p in parts),
        words=len(text.split()),
        hashtags=len(re.findall(r"(?<!\w)#\w+", text)),
        mentions=len(re.findall(r"(?<!\w)@\w+", text)),
        links=len(re.findall(r"https?://\S+", text)),
    )
