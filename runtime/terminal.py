"""Text from outside, made safe to print on a terminal or in a log line (no heavy imports: the
command line's help uses it)."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_UNPRINTABLE_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` with control characters written as escapes (`\\n`, `\\x1b`, `\\u202e`), so that what
    comes from outside (a post id, a text, a file name) cannot forge a log line or drive a terminal
    with ANSI or OSC sequences; with `newlines`, line breaks are kept."""
    pattern = _UNPRINTABLE_BUT_NEWLINE if newlines else _UNPRINTABLE
    return pattern.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)
