"""Picking the next token from a row of logits, each sequence with its own seeded generator.

The transforms, in vLLM's order: logit bias; suppressing the end tokens until
``min_new_tokens``; the repetition penalty (prompt and output, CTRL's scheme) and the
presence and frequency penalties (output only, OpenAI's); then greedy, or temperature,
top-k, top-p and min-p before sampling. Log-probabilities are the model's own (the raw
logits' log-softmax), as the API documents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import torch

from modelplex import NextToken, SamplingParams, TopLogprob

__all__ = ["Sampler"]


class Sampler:
    """The sampling state of one sequence: its parameters, its random generator, its tokens."""

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: Sequence[int],
        device: torch.device,
        eos_token_ids: Collection[int] = (),
    ) -> None:
        self.params = params
        self.seen = set(prompt_ids)
        self.counts: Counter[int] = Counter()  # generated tokens only
        self.generated = 0
        self.generator: torch.Generator | None = None
        if params.temperature > 0:
            self.generator = torch.Generator(device=device)
            if params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(params.seed)
        ends = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
        self._suppressed = sorted(ends) if params.min_new_tokens else []
        self._bias = params.logit_bias

    @property
    def is_plain_greedy(self) -> bool:
        """Greedy on the raw logits now (no transform, no logprobs): the token is their argmax."""
        p = self.params
        return (
            p.temperature == 0
            and p.repetition_penalty == 1.0
            and not p.presence_penalty
            and not p.frequency_penalty
            and not p.logit_bias
            and (not self._suppressed or self.generated >= p.min_new_tokens)
            and p.logprobs is None
        )

    def take(self, token_id: int) -> NextToken:
        """Record a token picked outside (the batched argmax of plain greedy rows)."""
        self._record(token_id)
        return NextToken(token_id)

    def _record(self, token_id: int) -> None:
        self.seen.add(token_id)
        self.counts[token_id] += 1
        self.generated += 1

    def __call__(self, logits: torch.Tensor) -> NextToken:
        """The next token from a 1-D row of logits (any float dtype)."""
        p = self.params
        logits = logits.float()
        scores = self._transform(logits)
        token = int(torch.argmax(scores)) if p.temperature == 0 else self._sample(scores)
        self._record(token)
        if p.logprobs is None:
            return NextToken(token)
        logp = torch.log_softmax(logits, dim=-1)
        top: tuple[TopLogprob, ...] = ()
        if p.logprobs:
            values, indices = torch.topk(logp, min(p.logprobs, logp.numel()))
            top = tuple(TopLogprob(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True))
        return NextToken(token, float(logp[token]), top)

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        scores = logits
        if self._bias:
            scores = scores.clone()
            for token, bias in self._bias:
                if 0 <= token < scores.numel():
                    scores[token] += bias
        if self._suppressed and self.generated < p.min_new_tokens:
            scores = scores.clone() if scores is logits else scores
            ids = [t for t in self._suppressed if 0 <= t < scores.numel()]
            scores[ids] = float("-inf")
        if p.repetition_penalty != 1.0 and self.seen:
            ids_t = torch.tensor(sorted(self.seen), device=logits.device)
            picked = scores[ids_t]
            scores = scores.clone() if scores is logits else scores
            scores[ids_t] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and self.counts:
            ids_t = torch.tensor(list(self.counts), device=logits.device)
            counts = torch.tensor(list(self.counts.values()), dtype=scores.dtype, device=logits.device)
            scores = scores.clone() if scores is logits else scores
            scores[ids_t] -= p.presence_penalty + p.frequency_penalty * counts
        return scores

    def _sample(self, unscaled: torch.Tensor) -> int:
        p = self.params
        scores = unscaled / p.temperature
        if p.top_k and p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
            drop = cumulative - torch.softmax(sorted_scores, dim=-1) >= p.top_p  # keep the first that crosses
            scores = scores.scatter(0, order[drop], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if p.min_p > 0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
            # A temperature so small that the scaled logits overflow (inf - inf is NaN in the
            # softmax): the distribution is the argmax's, so pick it.
            return int(torch.argmax(unscaled))
        return int(torch.multinomial(probs, 1, generator=self.generator))
