"""Text generation: the interface and its value types.

The server owns the decode loop: it calls :meth:`TextGenerator.step` once per
decode step, on the instance's worker thread, with the sequences that are
running on that instance, so that concurrent streams share each forward pass
(continuous batching). Sequences join (their first ``step`` runs their prompt)
and leave (``release``) between steps. Detokenization, stop sequences, limits,
cancellation and deadlines are the server's work, not the plugin's.

The one exception to "on the instance's thread": :meth:`TextGenerator.tokenize`
runs when a request is submitted, on a small tokenizing executor of the server's,
possibly while :meth:`TextGenerator.step` (or another ``tokenize``) runs on
another thread. See its docstring for what that asks of a plugin.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

__all__ = ["NextToken", "SamplingParams", "TextGenerationMeta", "TextGenerator", "TopLogprob"]


@dataclass(frozen=True)
class TextGenerationMeta(VariantMeta):
    """What a language model's variant says about itself."""

    context_length: int | None = None
    """Longest token sequence the model takes."""


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one sequence picks its tokens. The server has validated every field."""

    temperature: float = 0.0
    """0 picks the most likely token (greedy); otherwise logits are divided by it."""
    top_k: int = 0
    """Sample among the k most likely tokens only; 0 is off."""
    top_p: float = 1.0
    """Nucleus sampling threshold in (0, 1]; 1 is off."""
    repetition_penalty: float = 1.0
    """CTRL's penalty for tokens already in the prompt or the output; 1 is off."""
    seed: int | None = None
    """Seeds the sequence's own random generator: same seed, same tokens."""
    logprobs: int | None = None
    """None: no log-probabilities; n: the chosen token's and the n most likely."""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One of the most likely tokens at a position."""

    token_id: int
    logprob: float


@dataclass(frozen=True, slots=True)
class NextToken:
    """The token a sequence generated in one step."""

    token_id: int
    logprob: float | None = None
    """Its log-probability under the model (before sampling transforms), when asked."""
    top: tuple[TopLogprob, ...] = ()
    """The most likely tokens, best first, when asked."""


class TextGenerator(TaskModel):
    """A language model that the server decodes step by step.

    A *sequence* is whatever object :meth:`start` returns (a KV cache and the
    sequence's sampler, typically); the server only hands it back. All methods
    but :meth:`tokenize` run on the instance's thread, one at a time.
    """

    context_length: int
    """Longest prompt, in tokens. For a causal LM also the longest prompt plus output."""
    is_encoder_decoder: bool = False
    """True for seq2seq models (T5): the output does not share the prompt's window."""

    @abstractmethod
    def tokenize(self, prompt: str) -> list[int]:
        """The prompt's token ids, special tokens included as the model expects them.
        Raise InvalidInputError for a prompt the model cannot take (e.g. empty).

        Called when a request is submitted, before it waits for a batch slot, so that a
        prompt the model cannot take (empty, or longer than ``context_length``) fails at
        once; the ids it returns are the ones :meth:`start` later gets. It runs on the
        server's tokenizing executor: **not** on the instance's thread, never on the event
        loop, and possibly at the same time as :meth:`step`, :meth:`detokenize` or another
        ``tokenize`` call on other threads. So it must be thread-safe: read only what
        ``load()`` set up (the tokenizer), touch neither the model's weights nor any
        sequence, and change no shared state. (A Hugging Face fast tokenizer is safe to
        encode and decode from several threads as long as no call changes its truncation
        or padding settings.) Keep it cheap: no device work."""

    @abstractmethod
    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of ``token_ids``, special tokens skipped. A prefix of a multi-byte
        character may come out as U+FFFD; the server waits for the rest."""

    @abstractmethod
    def is_eos(self, token_id: int) -> bool:
        """Whether ``token_id`` ends the sequence."""

    @abstractmethod
    def start(self, prompt_ids: Sequence[int], params: SamplingParams) -> Any:
        """A new sequence for ``prompt_ids``. Cheap: the prompt runs in its first ``step``."""

    @abstractmethod
    def step(self, sequences: Sequence[Any]) -> Sequence[NextToken | Exception]:
        """Generate one token for each sequence, together: one token per sequence, in order.

        A sequence's first step runs its prompt and samples the first token; later steps
        feed the previous token. Sequences of different lengths share the call; the
        greedy output of each must not depend on which others it ran with. ``sequences``
        is any subset of the running ones (a stream whose client reads slowly sits steps out).

        When something fails for one sequence only (its sampling, say), return the exception
        in its place: that sequence fails (INTERNAL, or the error's own status for a
        ModelplexError) and is released; the others carry on. Raising fails every sequence
        of the call."""

    @abstractmethod
    def release(self, sequence: Any) -> None:
        """Free what a sequence holds (its KV cache). Called once, when it finishes,
        is cancelled, or its deadline passes; it is never stepped again."""
