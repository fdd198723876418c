"""The requests the local engines serve: a generation (`Decoding`) and a scoring (`Scoring`), with
what each request gives back, and the counts of prompt tokens reused and computed (`Tokens`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Decoding:
    """One generation request (two alike are still two requests)."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    frequency_penalty: float = 0.0
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    _detokenizer: Any = field(default=None, init=False, repr=False)
    """mlx-lm's streaming detokenizer of the tokens so far, made on the first token (with stop strings only)."""

    def accept_token(self, token: int, end: str | None, tokenizer: Any) -> bool:
        """Add a decoded token; whether the request is finished. `end` is "stop" for an
        end-of-sequence token (not part of the text) and "length" for the last token allowed; a
        stop string in the text also finishes it, the text cut before it.

        Stop strings are looked for in the text streamed so far (mlx-lm's streaming detokenizer:
        each token is detokenized once); the finished text is the tokenizer's decoding of all the
        tokens, cut before the first stop string."""
        if end != "stop":
            self.tokens.append(token)
            if self.stop:
                if self._detokenizer is None:
                    self._detokenizer = tokenizer.detokenizer
                self._detokenizer.add_token(token)
        streamed = self._detokenizer.text if self._detokenizer is not None else ""
        if end is None and not any(s and s in streamed for s in self.stop):
            return False
        self.text = tokenizer.decode(self.tokens)
        hit = next((s for s in self.stop if s and s in self.text), None)
        if hit is not None:
            self.text = self.text[: self.text.index(hit)]
        self.finish_reason = "stop" if hit is not None else end
        return True


@dataclass(eq=False)
class Scoring:
    """One scoring request: the log-probability of each target token after the context."""

    context: list[int]
    target: list[int]
    logprobs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.context or not self.target:
            raise ValueError("scoring needs at least one context token and one target token")


Request = Decoding | Scoring


@dataclass
class Tokens:
    """Prompt tokens a role's requests found in the prefix cache, and tokens computed, since start."""

    reused: int = 0
    computed: int = 0
