"""How the writer's prompts are laid out for a model: plain text for small local models, DSPy's own
chat or JSON formats for models that follow them (`writer.adapter`).

A 135M model shown DSPy's chat format (`[[ ## plan ## ]]` markers, field lists) copies the markers
into its answers. `PlainAdapter` never shows it field syntax: each input is a labelled paragraph,
the answer is asked for in a sentence, and the whole answer is the one output field. Demonstrations
are past turns in the same plain form, so compiled programs read the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dspy
from dspy.signatures.signature import Signature

from runtime.config import AdapterChoice
from runtime.reer.prompts import PLAN_PREFILL, SECTIONS

PLAN_OPENING = f"{next(iter(SECTIONS))}: {PLAN_PREFILL}"
"""How a mined plan starts ("Angle: I will"): the writer's plans open the same way."""

CHAT_FOLLOWERS = ("openai", "dspy")
"""Schemes of the served and cloud models: instruction-tuned models large enough to follow DSPy's chat format."""


def adapter_for(chain: list[str], choice: AdapterChoice) -> dspy.Adapter:
    """The adapter `writer.adapter` names; `auto` is DSPy's chat adapter when every provider of the
    generator `chain` is a served or cloud model, else (a local model anywhere in the chain, which
    a fallback may reach mid-program) the plain one."""
    if choice == "auto":
        choice = "chat" if all(urlsplit(uri).scheme in CHAT_FOLLOWERS for uri in chain) else "plain"
    adapters: dict[str, type[dspy.Adapter]] = {
        "plain": PlainAdapter,
        "chat": dspy.ChatAdapter,
        "json": dspy.JSONAdapter,
    }
    return adapters[choice]()


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


class PlainAdapter(dspy.Adapter):
    """Plain-text prompts for signatures with one output field; others (some of the optimizers' own
    steps) are laid out and read by DSPy's chat adapter.

    An output field's `openings` entry starts the model's answer (it is sent as the start of the
    assistant's turn, which the writer's LM prefills): "Angle: I will" keeps a plan on its sections.
    Its `ends` entries stop the answer: a plan is one block of lines, and a small model that leaves
    a blank line after it has moved on to something else.
    """

    def __init__(self, openings: dict[str, str] | None = None, ends: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.openings = openings if openings is not None else {"plan": PLAN_OPENING}
        self.ends = ends if ends is not None else {"plan": ["\n\n"]}
        self._chat = dspy.ChatAdapter()

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        lm_kwargs = self._stops(lm_kwargs, signature)
        answers: list[dict[str, Any]] = super().__call__(lm, lm_kwargs, signature, demos, inputs)
        return answers

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        lm_kwargs = self._stops(lm_kwargs, signature)
        answers: list[dict[str, Any]] = await super().acall(lm, lm_kwargs, signature, demos, inputs)
        return answers

    def format(
        self, signature: type[Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if not _plain(signature):
            chat: list[dict[str, Any]] = self._chat.format(signature, demos, inputs)
            return chat
        (output,) = signature.output_fields
        messages: list[dict[str, Any]] = [{"role": "system", "content": signature.instructions}]
        for demo in demos:
            if demo.get(output):
                messages.append({"role": "user", "content": self._ask(signature, demo)})
                messages.append({"role": "assistant", "content": str(demo[output]).strip()})
        messages.append({"role": "user", "content": self._ask(signature, inputs)})
        if opening := self.openings.get(output):
            messages.append({"role": "assistant", "content": opening})
        return messages

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        if not _plain(signature):
            fields: dict[str, Any] = self._chat.parse(signature, completion)
            return fields
        (output,) = signature.output_fields
        text = completion.strip()
        label = f"{_label(output)}:"
        if text.lower().startswith(label.lower()):  # an answer that names its field anyway
            text = text[len(label) :].strip()
        return {output: text}

    def _stops(self, lm_kwargs: dict[str, Any], signature: type[Signature]) -> dict[str, Any]:
        """`lm_kwargs` with the output's `ends` and a stop at each input's label: a model that starts
        another turn ("Brief: ...") has finished its answer."""
        if not _plain(signature):
            return lm_kwargs
        (output,) = signature.output_fields
        given = lm_kwargs.get("stop") or []
        stops = [f"\n{_label(name)}:" for name in signature.input_fields] + self.ends.get(output, [])
        return {**lm_kwargs, "stop": [*([given] if isinstance(given, str) else given), *stops]}

    @staticmethod
    def _ask(signature: type[Signature], values: dict[str, Any]) -> str:
        """The inputs as labelled paragraphs, then what to answer with, in a sentence."""
        paragraphs = []
        for name in signature.input_fields:
            value = str(values.get(name, "")).strip()
            if value:
                joiner = "\n" if "\n" in value else " "
                paragraphs.append(f"{_label(name)}:{joiner}{value}")
        ((output, field),) = signature.output_fields.items()
        what = output.replace("_", " ")
        desc = (field.json_schema_extra or {}).get("desc", "")
        described = f" ({desc})" if desc and not str(desc).startswith("${") else ""
        paragraphs.append(f"Write the {what}{described}. Answer with the {what} only.")
        return "\n\n".join(paragraphs)


def _plain(signature: type[Signature]) -> bool:
    return len(signature.output_fields) == 1
