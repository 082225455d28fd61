"""Picking the next token from a row of logits: greedy, or sampled with temperature,
top-k, top-p and a repetition penalty, each sequence with its own seeded generator."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modelplex import NextToken, SamplingParams, TopLogprob

__all__ = ["Sampler"]


class Sampler:
    """The sampling state of one sequence: its parameters, its random generator, its tokens."""

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], device: torch.device) -> None:
        self.params = params
        self.seen = list(prompt_ids)
        self.generator: torch.Generator | None = None
        if params.temperature > 0:
            self.generator = torch.Generator(device=device)
            if params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(params.seed)

    @property
    def is_plain_greedy(self) -> bool:
        """Greedy without a penalty or logprobs: the token is the argmax of the raw logits."""
        p = self.params
        return p.temperature == 0 and p.repetition_penalty == 1.0 and p.logprobs is None

    def take(self, token_id: int) -> NextToken:
        """Record a token picked outside (the batched argmax of plain greedy rows)."""
        self.seen.append(token_id)
        return NextToken(token_id)

    def __call__(self, logits: torch.Tensor) -> NextToken:
        """The next token from a 1-D row of logits (any float dtype)."""
        p = self.params
        logits = logits.float()
        scores = logits
        if p.repetition_penalty != 1.0 and self.seen:
            ids = torch.tensor(sorted(set(self.seen)), device=logits.device)
            picked = scores[ids]
            scores = scores.clone()
            scores[ids] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
        if p.temperature == 0:
            token = int(torch.argmax(scores))
        else:
            token = self._sample(scores)
        self.seen.append(token)
        if p.logprobs is None:
            return NextToken(token)
        logp = torch.log_softmax(logits, dim=-1)
        top: tuple[TopLogprob, ...] = ()
        if p.logprobs:
            values, indices = torch.topk(logp, min(p.logprobs, logp.numel()))
            top = tuple(TopLogprob(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True))
        return NextToken(token, float(logp[token]), top)

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
        if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
            # A temperature so small that the scaled logits overflow (inf - inf is NaN in the
            # softmax): the distribution is the argmax's, so pick it.
            return int(torch.argmax(unscaled))
        return int(torch.multinomial(probs, 1, generator=self.generator))
