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

from modelplex.errors import InvalidInputError
from modelplex.specs import VariantMeta
from modelplex.tasks.base import TaskModel

__all__ = ["ChatMessage", "NextToken", "SamplingParams", "TextGenerationMeta", "TextGenerator", "TopLogprob"]


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
    min_new_tokens: int = 0
    """Until this many tokens are generated, the end-of-sequence tokens (unless ``ignore_eos``)
    and ``stop_token_ids`` are never picked."""
    stop_token_ids: tuple[int, ...] = ()
    """Tokens that end the sequence (the server stops it); kept from being picked before
    ``min_new_tokens``."""
    ignore_eos: bool = False
    """The end-of-sequence tokens do not end the sequence (nor are they suppressed)."""
    presence_penalty: float = 0.0
    """Subtracted from the logit of every token already generated (OpenAI's scheme)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it was generated."""
    min_p: float = 0.0
    """Drops tokens less likely than ``min_p`` times the most likely one; 0 is off."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """``(token id, bias)`` pairs added to the logits before sampling (and before greedy)."""

    @property
    def is_plain_greedy(self) -> bool:
        """Greedy on the raw logits: no transform changes which token is the most likely."""
        return (
            self.temperature == 0
            and self.repetition_penalty == 1.0
            and self.presence_penalty == 0.0
            and self.frequency_penalty == 0.0
            and not self.logit_bias
            and not self.min_new_tokens
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, rendered into a prompt by the model's chat template."""

    role: str
    """``system``, ``user``, ``assistant`` (or any role the template knows)."""
    content: str


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
    eos_token_ids: tuple[int, ...] = ()
    """The tokens that end a sequence (shown in ModelInfo); :meth:`is_eos` decides."""
    bos_token_id: int | None = None
    """The token a prompt starts with, if the model has one (shown in ModelInfo)."""
    vocab_size: int = 0
    """Token ids a prompt given as ids may use are ``0 .. vocab_size - 1``; 0: not checked."""
    has_chat_template: bool = False
    """Whether :meth:`render_chat` can render a conversation."""

    @abstractmethod
    def tokenize(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        """The prompt's token ids, special tokens included as the model expects them (unless
        ``add_special_tokens`` is False: a prompt rendered from a chat template already has
        them). Raise InvalidInputError for a prompt the model cannot take (e.g. empty).

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
    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """The text of ``token_ids``, special tokens skipped unless ``skip_special_tokens`` is
        False. A prefix of a multi-byte character may come out as U+FFFD; the server waits for
        the rest. Thread-safe like :meth:`tokenize` (the Detokenize RPC calls it off the
        instance's thread)."""

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (a byte-level token may hold part of a character), for
        logprobs. The default encodes its text, which is right for whole-character tokens."""
        return self.detokenize([token_id], skip_special_tokens=False).encode()

    def render_chat(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The prompt text of a conversation, rendered by the model's chat template, special
        tokens included (it is tokenized with ``add_special_tokens=False``). Thread-safe like
        :meth:`tokenize`. Raise InvalidInputError when the model has no template or the
        template refuses the messages."""
        raise InvalidInputError("this model has no chat template: send a prompt (Generate) instead")

    @abstractmethod
    def is_eos(self, token_id: int) -> bool:
        """Whether ``token_id`` ends the sequence."""

    @abstractmethod
    def start(self, prompt_ids: Sequence[int], params: SamplingParams) -> Any:
        """A new sequence for ``prompt_ids``. Cheap: the prompt runs in its first ``step``."""

    @abstractmethod
    def step(self, sequences: Sequence[Any]) -> Sequence[NextToken | Exception | None]:
        """Generate one token for each sequence, together: one token per sequence, in order.

        A sequence's first step runs its prompt and samples the first token; later steps
        feed the previous token. Sequences of different lengths share the call; the
        greedy output of each must not depend on which others it ran with. ``sequences``
        is any subset of the running ones (a stream whose client reads slowly sits steps out).

        A sequence whose prompt is not all processed yet (a long prompt prefilled in chunks,
        a few hundred tokens per step, so that it does not stall the running sequences) may
        return None in its place: it has no token this step.

        When something fails for one sequence only (its sampling, say), return the exception
        in its place: that sequence fails (INTERNAL, or the error's own status for a
        ModelplexError) and is released; the others carry on. Raising fails every sequence
        of the call."""

    def prefill(self, sequences: Sequence[Any]) -> Sequence[NextToken | Exception | None] | None:
        """Optional: run only the prompts of these new sequences (none stepped yet) and sample
        each one's first token, as their first :meth:`step` would, without advancing any
        other sequence; the same results in the same places as :meth:`step`. The server
        calls it, when new sequences join running ones, before the step of the running ones
        (which then includes the new ones that got their token), so that the new ones' first
        tokens are sent without waiting for the running ones' decode pass. Return None (the
        default) to leave the new sequences to :meth:`step`."""
        return None

    @abstractmethod
    def release(self, sequence: Any) -> None:
        """Free what a sequence holds (its KV cache). Called once, when it finishes,
        is cancelled, or its deadline passes; it is never stepped again."""
