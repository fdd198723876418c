"""Keys out of error text: servers quote the key they were sent in their errors, and those errors
reach the failure records, the logs and the spans."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
SHORTEST = 6
"""A piece of a key this long or longer is taken for the key."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, and any piece of one at least `SHORTEST` characters long, as `***`."""
    for secret in secrets:
        for size in range(len(secret), SHORTEST - 1, -1):
            for start in range(len(secret) - size + 1):
                if (piece := secret[start : start + size]) in text:
                    text = text.replace(piece, "***")
    return text


def environment_secrets() -> list[str]:
    """The values of environment variables named like keys (`OPENAI_API_KEY`, `HF_TOKEN`, ...): the
    keys a library such as litellm may send on its own, without our knowing which."""
    return [value for name, value in os.environ.items() if SECRET_NAME.search(name) and len(value) >= 8]
