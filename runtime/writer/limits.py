"""Platform limits, enforced on every draft: repaired where that keeps the text whole, else refused."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.records import Features, Platform
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
    """Cut `text` into exactly `thread_size` posts of at most the platform's limit.

    A single post is cut after its last whole sentence within the limit (the writing step is bounded
    in tokens, so a long answer ends mid-sentence anyway), and a thread written as one post is
    joined. A thread of the wrong size, or with a post over the limit, is re-cut at sentence ends
    into the posts asked for, as even as they can be. A draft that still breaks a limit (a sentence
    over it, fewer sentences than posts) is refused with the reason.
    """
    limit = platform.max_chars
    parts = [_NUMBERING.sub("", p).strip() for p in _BREAK.split(text)]
    parts = [p for p in parts if p]
    if not parts:
        return Fitted([], rejected="empty draft")
    if thread_size == 1:
        return _single(parts, limit, platform)
    if len(parts) != thread_size or any(len(p) > limit for p in parts):
        sentences = [piece for p in parts for piece in _SENTENCE_END.split(p)]
        if len(sentences) < thread_size:
            return Fitted(parts, None, f"a thread of {len(sentences)} sentences, {thread_size} posts asked for")
        cut = _even(sentences, thread_size)
        repaired = f"re-cut at sentence ends into {thread_size} posts ({len(parts)} written)"
        parts = cut
    else:
        repaired = None
    if too_long := [len(p) for p in parts if len(p) > limit]:
        return Fitted(parts, repaired, f"over the {platform.value} limit: {max(too_long)} characters (at most {limit})")
    return Fitted(parts, repaired)


def _single(parts: list[str], limit: int, platform: Platform) -> Fitted:
    """One post: a thread joined, a post over the limit cut after its last whole sentence within it."""
    repaired = None
    if len(parts) > 1:
        parts, repaired = ["\n\n".join(parts)], "joined a thread into one post, as the brief asked for one"
    if len(parts[0]) > limit and len(kept := _pack(parts[0], limit)[0]) <= limit:
        repaired = f"cut after the last whole sentence within {limit} characters ({len(parts[0])} -> {len(kept)})"
        parts = [kept]
    if len(parts[0]) > limit:
        return Fitted(parts, repaired, f"over the {platform.value} limit: {len(parts[0])} characters (at most {limit})")
    return Fitted(parts, repaired)


def _even(sentences: list[str], size: int) -> list[str]:
    """`sentences` in `size` posts, in order, with the longest post as short as it can be."""
    length = [0]
    for sentence in sentences:
        length.append(length[-1] + len(sentence) + 1)
    n = len(sentences)
    # best[k][i]: the longest post when the first i sentences make k posts; cut[k][i]: where the last starts
    best = [[float("inf")] * (n + 1) for _ in range(size + 1)]
    cut = [[0] * (n + 1) for _ in range(size + 1)]
    best[0][0] = 0
    for k in range(1, size + 1):
        for i in range(k, n - (size - k) + 1):
            for j in range(k - 1, i):
                longest = max(best[k - 1][j], length[i] - length[j] - 1)
                if longest < best[k][i]:
                    best[k][i], cut[k][i] = longest, j
    posts, end = [], n
    for k in range(size, 0, -1):
        start = cut[k][end]
        posts.append(" ".join(sentences[start:end]))
        end = start
    return posts[::-1]


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
