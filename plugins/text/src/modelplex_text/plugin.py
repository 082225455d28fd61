"""The modelplex entry point: registers the text-generation specs.

Importing this module imports neither torch nor transformers: the generator module
is imported by the factory, when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from modelplex import LoadContext, ModelSpec, Task, TextGenerationMeta, Variant, hookimpl
from modelplex_text.settings import TextSettings

if TYPE_CHECKING:
    from modelplex_text.generator import HFTextGenerator

__all__ = ["FAMILIES", "Family", "build_specs", "register_models"]

Kind = Literal["causal", "seq2seq"]


@dataclass(frozen=True)
class Family:
    """One spec: a model of the hub (``hub_id``), or any model of a kind (``hub_id`` None)."""

    name: str
    kind: Kind
    hub_id: str | None
    context_length: int | None = None
    num_params: int | None = None
    title: str = ""
    aliases: tuple[str, ...] = ()
    """Older hub ids of the same weights, also looked up in the local cache."""


FAMILIES: tuple[Family, ...] = (
    Family("gpt2", "causal", "openai-community/gpt2", 1024, 124_000_000, "GPT-2 small", ("gpt2",)),
    Family(
        "gpt2-medium", "causal", "openai-community/gpt2-medium", 1024, 355_000_000, "GPT-2 medium", ("gpt2-medium",)
    ),
    Family("gpt2-large", "causal", "openai-community/gpt2-large", 1024, 774_000_000, "GPT-2 large", ("gpt2-large",)),
    Family("gpt2-xl", "causal", "openai-community/gpt2-xl", 1024, 1_558_000_000, "GPT-2 XL", ("gpt2-xl",)),
    Family("distilgpt2", "causal", "distilbert/distilgpt2", 1024, 82_000_000, "DistilGPT-2", ("distilgpt2",)),
    Family("causal-lm", "causal", None, title="any Hugging Face causal LM"),
    Family("t5-small", "seq2seq", "google-t5/t5-small", 512, 60_000_000, "T5 small", ("t5-small",)),
    Family("t5-base", "seq2seq", "google-t5/t5-base", 512, 220_000_000, "T5 base", ("t5-base",)),
    Family("t5-large", "seq2seq", "google-t5/t5-large", 512, 770_000_000, "T5 large", ("t5-large",)),
    Family("flan-t5-small", "seq2seq", "google/flan-t5-small", 512, 77_000_000, "Flan-T5 small"),
    Family("flan-t5-base", "seq2seq", "google/flan-t5-base", 512, 248_000_000, "Flan-T5 base"),
    Family("flan-t5-large", "seq2seq", "google/flan-t5-large", 512, 783_000_000, "Flan-T5 large"),
    Family("flan-t5-xl", "seq2seq", "google/flan-t5-xl", 512, 2_850_000_000, "Flan-T5 XL"),
    Family("seq2seq-lm", "seq2seq", None, title="any Hugging Face seq2seq LM"),
    Family("tiny-gpt2", "causal", None, 512, title="a tiny random GPT-2 built on the spot (demo)"),
)

DEMO = "tiny-gpt2"
"""The family of the demo model: random weights only, its tokenizer built at load."""


def _build(family: Family, ctx: LoadContext) -> HFTextGenerator:
    if family.name == DEMO:
        from modelplex_text.demo import demo_generator

        return demo_generator(family, ctx)  # type: ignore[no-any-return]
    from modelplex_text.generator import HFTextGenerator

    return HFTextGenerator(family, ctx)


def _spec(family: Family) -> ModelSpec:
    variants: tuple[Variant, ...] = ()
    if family.hub_id is not None:
        meta = TextGenerationMeta(
            context_length=family.context_length,
            num_params=family.num_params,
            recipe=f"https://huggingface.co/{family.hub_id}",
        )
        variants = (Variant("hf", weights=family.hub_id, meta=meta, description=f"{family.hub_id} on the hub"),)
    if family.name == DEMO:
        what = (
            "A 2-layer GPT-2 with random weights and a byte-level tokenizer built at load: "
            'weights = "random" only; its text is meaningless (the demo profile serves it)'
        )
    elif family.kind == "causal":
        what = (
            f"{family.title} (causal LM)"
            if family.hub_id
            else (
                "Any Hugging Face causal LM: weights = a local folder saved with save_pretrained, "
                'or settings.hub_id with weights = "pretrained"'
            )
        )
    else:
        what = (
            f"{family.title} (seq2seq LM; task prefixes are part of the prompt)"
            if family.hub_id
            else (
                "Any Hugging Face seq2seq LM: weights = a local folder saved with save_pretrained, "
                'or settings.hub_id with weights = "pretrained"'
            )
        )
    return ModelSpec(
        name=family.name,
        task=Task.TEXT_GENERATION,
        factory=partial(_build, family),
        variants=variants,
        settings=TextSettings,
        description=what,
        # The generic specs serve any hub model: `weights = "org/model"` names it.
        accepts_weight_ids=family.hub_id is None and family.name != DEMO,
    )


def build_specs() -> list[ModelSpec]:
    """The specs this plugin registers, one per family."""
    return [_spec(f) for f in FAMILIES]


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register every text-generation family."""
    for spec in build_specs():
        register(spec)
