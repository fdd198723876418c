"""The draft gate: what makes a draft unfit to post, whatever its length. A refused draft is written
again (up to `writer.max_tries`) and kept with its reason, as one over the platform's limit is.

Small models echo prompt markup, write templates full of placeholders, loop, drift off the topic or
into another language. Each check below names what it found, so a user reading `drafts.jsonl` sees
why a try was refused.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from typing import Any

from runtime.reer.plans import content_words, words
from runtime.reer.prompts import SECTIONS
from runtime.writer.program import BRIEF_LABELS

_MARKUP = re.compile(r"\[\[\s*#+|#+\s*\]\]|##\s*\w+\s*##|\[\s*##|\{(?:brief|plan|post|topic)\}", re.IGNORECASE)
"""DSPy's field markers (`[[ ## plan ## ]]`), mangled ones (`[## plan #`, `#]]`) and field slots (`{plan}`)."""
_LABELS = ("Brief", "Plan", "Post", *BRIEF_LABELS, *SECTIONS)
_LABEL = re.compile(rf"(?<![\w-])(?:{'|'.join(map(re.escape, _LABELS))}):")
"""A label of the prompt or the plan, capitalised as the prompt writes it ("Topic:", "Plan:", "Tone:"): an echo."""
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]*[A-Za-z][^\[\]\n]*\](?!\()|\{[^{}\n]*\}|<[A-Za-z/][^<>\n]*>")
"""Template slots: `[insert image]`, `[blog post]`, `{name}`, `<link>` (a Markdown link `[text](url)` is not one)."""
_CHATTER = re.compile(
    r"^\W*(?:(?:sure|certainly|of course|absolutely)\b\s*[,.!]|as an ai\b|i(?:'d| would) be (?:happy|glad)\b"
    r"|i can (?:write|help)\b|(?:if )?you(?:'re| are) looking to\b"
    r"|(?:here(?:'s| is| are)|below is) (?:a|an|the|your|my)(?: \w+){0,3}"
    r" (?:post|draft|version|tweet|thread|response)\b)",
    re.IGNORECASE,
)
"""An assistant answering the request ("Sure, I'll do that.", "Here's a shorter version:"), not writing the post."""
_REPEATED_WORDS = 4
"""The same word this many times in a row is a loop (emphasis repeats a word twice, rarely thrice)."""
_PHRASE = 4
_PHRASE_REPEATS = 3
"""A phrase of `_PHRASE` words said `_PHRASE_REPEATS` times is a loop."""
_SURE = 0.8
"""The language identifier's probability above which its answer is taken."""


def refusal(text: str, topic: str) -> str | None:
    """Why `text`, a draft about `topic`, cannot be posted; None when it can."""
    for check in (
        _markup,
        _placeholder,
        _chatter,
        _repeats,
        lambda t: _language(t, topic),
        lambda t: _off_topic(t, topic),
    ):
        if reason := check(text):
            return reason
    return None


def kind(reason: str) -> str:
    """What kind of refusal `reason` is, without its particulars: "no word of the topic", "over the x limit"."""
    return reason.split(":", maxsplit=1)[0].split(" (", maxsplit=1)[0]


def _markup(text: str) -> str | None:
    found = _MARKUP.search(text) or _LABEL.search(text)
    return f"prompt markup in the draft: {found.group(0).strip()!r}" if found else None


def _placeholder(text: str) -> str | None:
    found = _PLACEHOLDER.search(text)
    return f"a placeholder left to fill: {found.group(0)!r}" if found else None


def _chatter(text: str) -> str | None:
    found = _CHATTER.search(text)
    return f"an answer to the request, not the post: {found.group(0).strip()!r}" if found else None


def _repeats(text: str) -> str | None:
    lines = Counter(" ".join(line.split()).lower() for line in text.splitlines() if len(line.strip()) >= 8)
    if lines and (line := lines.most_common(1)[0])[1] > 1:
        return f"a line repeated {line[1]} times: {line[0][:60]!r}"
    said = words(text)
    for i in range(len(said) - _REPEATED_WORDS + 1):
        if len(set(said[i : i + _REPEATED_WORDS])) == 1:
            return f"a word repeated {_REPEATED_WORDS} times in a row: {said[i]!r}"
    phrases = Counter(tuple(said[i : i + _PHRASE]) for i in range(len(said) - _PHRASE + 1))
    if phrases and (phrase := phrases.most_common(1)[0])[1] >= _PHRASE_REPEATS:
        return f"a phrase repeated {phrase[1]} times: {' '.join(phrase[0])!r}"
    return None


def _off_topic(text: str, topic: str) -> str | None:
    wanted = content_words(topic)
    if wanted and not wanted & content_words(text):
        return f"no word of the topic ({', '.join(sorted(wanted))}, or a word of the same stem)"
    return None


def _language(text: str, topic: str) -> str | None:
    """A draft in another language than the topic's, when the identifier is sure of both."""
    asked, sure_asked = _identify(topic)
    written, sure_written = _identify(text)
    if asked != written and min(sure_asked, sure_written) >= _SURE:
        return f"written in {written}, the topic is in {asked} (ISO 639-1 codes)"
    return None


def _identify(text: str) -> tuple[str, float]:
    language, probability = _identifier().classify(text)
    return str(language), float(probability)


@cache
def _identifier() -> Any:
    """py3langid's model (97 languages, from n-gram counts), loaded once, with probabilities normalised."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
