"""A JSON document of posts: one array of events or post objects, or an object with a `posts` array
(the pack's `input.json`). Each element becomes an input line, checked like a JSON Lines one."""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.errors import InputError
from runtime.inputs.lines import Line, nesting_depth
from runtime.records import Rejection

MAX_BYTES = 256 << 20


def looks_like(head: str) -> bool:
    """Whether a file that opens with `head` is one JSON document rather than JSON Lines: it opens
    an array, or an object that does not close on its first line or holds a `posts` array."""
    text = head.lstrip()
    if text.startswith("["):
        return True
    if not text.startswith("{"):
        return False
    first = text.split("\n", 1)[0]
    try:
        value = msgspec.json.decode(first)
    except msgspec.DecodeError:
        return "\n" in text  # a pretty-printed object, spread over lines
    return isinstance(value, dict) and isinstance(value.get("posts"), list) and "type" not in value


def lines(data: bytes, name: str, max_nesting: int) -> list[Line]:
    """Each element of the document `data` (read from `name`) as an input line; a post object
    without `"type"` is a post. A document that cannot be read at all is an `InputError`; a bad
    element is a rejected line."""
    path = name
    if len(data) > MAX_BYTES:
        raise InputError(f"{path}: a JSON document over {MAX_BYTES >> 20} MB; give JSON Lines instead")
    if (depth := nesting_depth(data)) > max_nesting + 1:  # + 1: the array the posts are in
        raise InputError(f"{path}: the JSON nests {depth} levels deep, over max_nesting ({max_nesting}) + 1")
    try:
        document: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InputError(f"{path}: not a JSON document: {exc}") from None
    items = document.get("posts") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise InputError(f'{path}: a JSON document of posts is an array, or an object with a "posts" array')
    found = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, dict):
            found.append(Line(number, msgspec.json.encode({"type": "post", **item})))
        else:
            raw = msgspec.json.encode(item)
            refused = Rejection("invalid event", f"expected an object, got {raw[:80].decode()!r}")
            found.append(Line(number, raw, rejection=refused))
    return found
