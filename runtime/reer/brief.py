"""Derive the brief `x` a post answers from its features, never from its words."""

from __future__ import annotations

import re

from runtime.records import Brief, PostEvent

_FEATURES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\?"), "asks the reader a question"),
    (re.compile(r"https?://\S+"), "links to a page"),
    (re.compile(r"(?<!\w)#\w+"), "uses hashtags"),
    (re.compile(r"(?<!\w)@\w+"), "mentions other accounts"),
    (re.compile(r"\d"), "uses numbers"),
    (re.compile(r"!"), "uses exclamation"),
    (re.compile(r"\n"), "spans several lines"),
    (re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]"), "uses emoji"),
]


def derive_brief(post: PostEvent) -> Brief:
    """A brief with the platform, its limit, the post's length class and its stylistic features."""
    size = len(post.text)
    length = "short" if size < 100 else "medium" if size < 200 else "long"
    features = [label for pattern, label in _FEATURES if pattern.search(post.text)]
    limit = post.platform.max_chars
    text = (
        f"Write a {length} post for {post.platform.value} (at most {limit} characters) "
        f"for the audience of @{post.author}."
    )
    if features:
        text += " The post " + ", ".join(features) + "."
    return Brief(platform=post.platform, max_chars=limit, length=length, features=features, text=text)
