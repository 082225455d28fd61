"""A Hugging Face causal or seq2seq LM, decoded one step at a time with a KV cache per sequence.

Continuous batching: every ``step`` decodes all running sequences together. The
prompts of new sequences run first, together (a causal LM's left-padded, a seq2seq
LM's right-padded into the encoder, both masked); then the sequences already running share one forward
pass:

* causal LMs: each sequence's cache is left-padded to the longest, with an
  attention mask hiding the padding and explicit position ids, so a sequence's
  tokens are the ones it would get alone;
* seq2seq LMs: the encoder states and cross-attention caches are right-padded
  and masked. T5-style models (relative position buckets, which left padding
  leaves intact) left-pad the decoder caches like causal LMs, so all running
  sequences share a pass; other seq2seq models (absolute decoder positions,
  which left padding would shift) batch the sequences whose decoders have the
  same length, one pass per length.

After the pass each sequence keeps its own slice of the cache, so it can leave
the batch (finish, be cancelled) between any two steps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from modelplex import (
    InvalidInputError,
    LoadContext,
    ModelLoadError,
    NextToken,
    SamplingParams,
    TextGenerator,
)
from modelplex_text.plugin import Family
from modelplex_text.sampling import Sampler
from modelplex_text.settings import TextSettings
from modelplex_text.weights import Source, resolve

log = logging.getLogger(__name__)

__all__ = ["HFTextGenerator"]

# Decoder position schemes for which a left-padded decoder cache is exact.
_RELATIVE_POSITIONS = frozenset({"t5", "mt5", "umt5"})

# transformers builds models under process-wide patches (meta-device init), so two
# instances loading at once on their own threads break each other: load one at a time.
_LOAD_LOCK = threading.Lock()

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(eq=False)
class _Sequence:
    prompt: torch.Tensor  # [1, prompt_len]
    sampler: Sampler
    last: int | None = None  # the token fed at the next step; None before the prefill
    self_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    encoder_states: torch.Tensor | None = None  # [1, source_len, d_model], seq2seq only

    @property
    def length(self) -> int:
        """Tokens in the self-attention cache."""
        return self.self_kv[0][0].shape[-2] if self.self_kv else 0


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class HFTextGenerator(TextGenerator):
    """A transformers ``AutoModelForCausalLM`` or ``AutoModelForSeq2SeqLM`` and its tokenizer."""

    def __init__(self, family: Family, ctx: LoadContext[TextSettings]) -> None:
        self.family = family
        self.ctx = ctx
        settings = ctx.settings
        self.settings = settings
        self.device = torch.device(ctx.device)
        self.dtype = _DTYPES[settings.dtype]
        if self.dtype is not torch.float32 and self.device.type != "cuda":
            raise ModelLoadError(
                f"dtype {settings.dtype} is for CUDA devices; {ctx.model_name!r} runs on {ctx.device}: "
                'use dtype = "float32" there'
            )
        self.is_encoder_decoder = family.kind == "seq2seq"
        self.model: Any = None
        self.tokenizer: Any = None
        self._eos: frozenset[int] = frozenset()
        self.context_length = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        hub_id = self.ctx.weights.id or self.settings.hub_id or self.family.hub_id
        source = resolve(self.ctx, hub_id, self.family.aliases)
        with _LOAD_LOCK:
            self.tokenizer = self._load_tokenizer(source)
            self.model = self._load_model(source).to(self.device).eval()
        config = self.model.config
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        if eos is None:
            eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self._eos = frozenset([eos] if isinstance(eos, int) else (eos or ()))
        self.context_length = self.settings.context_length or self._context_length()
        self._pad_decoder = config.model_type in _RELATIVE_POSITIONS
        self._decoder_start = (
            config.decoder_start_token_id
            if getattr(config, "decoder_start_token_id", None) is not None
            else config.pad_token_id
        )

    def _load_tokenizer(self, source: Source) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source.name_or_path, local_files_only=source.local_files_only)
        except Exception as e:
            raise ModelLoadError(f"cannot load the tokenizer of {source.name_or_path}: {type(e).__name__}: {e}") from e

    def _load_model(self, source: Source) -> Any:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

        auto = AutoModelForSeq2SeqLM if self.is_encoder_decoder else AutoModelForCausalLM
        try:
            if source.random:
                config = AutoConfig.from_pretrained(source.name_or_path, local_files_only=True)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    return auto.from_config(config, dtype=self.dtype)
            return auto.from_pretrained(source.name_or_path, local_files_only=source.local_files_only, dtype=self.dtype)
        except Exception as e:
            raise ModelLoadError(
                f"cannot load {source.name_or_path} as a {self.family.kind} LM: {type(e).__name__}: {e}"
            ) from e

    def _context_length(self) -> int:
        config = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            return limit
        return 512

    def warmup(self) -> None:
        seq = self.start(self.tokenize("warm up"), SamplingParams())
        for _ in range(2):
            (token,) = self.step([seq])
            if isinstance(token, Exception):
                raise token
        self.release(seq)

    def unload(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))

    # -- text ----------------------------------------------------------------------------------

    def tokenize(self, prompt: str) -> list[int]:
        """Thread-safe, as the server requires (it runs on the server's tokenizing executor,
        possibly while ``step`` and ``detokenize`` run on the instance's thread): it only reads
        the tokenizer, and encodes without truncation or padding, the settings ``warmup`` left
        the fast tokenizer in, so the call never reconfigures (mutably borrows) the Rust
        tokenizer that another thread may be using."""
        ids: list[int] = self.tokenizer(prompt, truncation=False, padding=False)["input_ids"]
        if not ids:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise InvalidInputError("the prompt is empty, and this model has no start token to begin from")
            ids = [bos]
        return ids

    def detokenize(self, token_ids: Sequence[int]) -> str:
        # No clean-up of spaces: it rewrites text across token boundaries (" ." -> "."), which
        # would make a window's decoding disagree with the whole text's.
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def is_eos(self, token_id: int) -> bool:
        return token_id in self._eos

    # -- decoding ------------------------------------------------------------------------------

    def start(self, prompt_ids: Sequence[int], params: SamplingParams) -> _Sequence:
        prompt = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        return _Sequence(prompt, Sampler(params, prompt_ids, self.device))

    def release(self, sequence: Any) -> None:
        sequence.self_kv = []
        sequence.cross_kv = []
        sequence.encoder_states = None

    @torch.inference_mode()
    def step(self, sequences: Sequence[Any]) -> list[NextToken | Exception]:
        rows: dict[int, torch.Tensor] = {}
        running = [s for s in sequences if s.last is not None]
        new = [s for s in sequences if s.last is None]
        if len(new) > 1:
            prefill = self._prefill_seq2seq_together if self.is_encoder_decoder else self._prefill_causal_together
            for s, row in zip(new, prefill(new), strict=True):
                rows[id(s)] = row
        else:
            for s in new:
                rows[id(s)] = self._prefill(s)
        if running:
            pad = not self.is_encoder_decoder or self._pad_decoder
            groups = [running] if pad else _by_length(running)
            for group in groups:
                logits = self._decode_causal(group) if not self.is_encoder_decoder else self._decode_seq2seq(group)
                for s, row in zip(group, logits, strict=True):
                    rows[id(s)] = row
        # Plain greedy rows take one argmax and one device-to-host copy together.
        plain = [s for s in sequences if s.sampler.is_plain_greedy]
        picked: dict[int, NextToken] = {}
        if plain:
            best = torch.stack([rows[id(s)] for s in plain]).argmax(dim=-1).tolist()
            for s, token_id in zip(plain, best, strict=True):
                picked[id(s)] = s.sampler.take(token_id)
        out: list[NextToken | Exception] = []
        for s in sequences:
            try:
                token = picked.get(id(s)) or s.sampler(rows[id(s)])
            except Exception as e:  # one sequence's sampling failed: it alone fails
                log.exception("sampling failed for one sequence")
                out.append(e)
                continue
            s.last = token.token_id
            out.append(token)
        return out

    def _prefill(self, s: _Sequence) -> torch.Tensor:
        mask = torch.ones_like(s.prompt)
        if self.is_encoder_decoder:
            encoder = self.model.get_encoder()
            s.encoder_states = encoder(input_ids=s.prompt, attention_mask=mask).last_hidden_state
            start = torch.tensor([[self._decoder_start]], dtype=torch.long, device=self.device)
            out = self.model(
                encoder_outputs=(s.encoder_states,), attention_mask=mask, decoder_input_ids=start, use_cache=True
            )
            s.self_kv = _layers(out.cache.self_attention_cache)
            s.cross_kv = _layers(out.cache.cross_attention_cache)
        else:
            out = self.model(input_ids=s.prompt, attention_mask=mask, use_cache=True, logits_to_keep=1)
            s.self_kv = _layers(out.cache)
        return out.logits[0, -1]

    def _prefill_causal_together(self, group: list[_Sequence]) -> torch.Tensor:
        """Run several prompts in one pass: left-padded, masked, with each prompt's own positions;
        each sequence keeps its cache without the padding."""
        from transformers import DynamicCache

        lengths = [s.prompt.shape[1] for s in group]
        longest = max(lengths)
        pads = [longest - n for n in lengths]
        ids = torch.zeros(len(group), longest, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for row, (s, pad) in enumerate(zip(group, pads, strict=True)):
            ids[row, pad:] = s.prompt[0]
            mask[row, pad:] = 1
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=DynamicCache(),
            use_cache=True,
            logits_to_keep=1,
        )
        layers = _layers(out.cache)
        for row, (s, pad) in enumerate(zip(group, pads, strict=True)):
            s.self_kv = [(k[row : row + 1, :, pad:], v[row : row + 1, :, pad:]) for k, v in layers]
        return out.logits[:, -1]

    def _prefill_seq2seq_together(self, group: list[_Sequence]) -> torch.Tensor:
        """Encode several prompts in one pass (right-padded, masked) and run their first decoder
        step together; each sequence keeps its encoder states and caches without the padding."""
        lengths = [s.prompt.shape[1] for s in group]
        longest = max(lengths)
        pad_id = self.model.config.pad_token_id or 0
        ids = torch.full((len(group), longest), pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for row, (s, n) in enumerate(zip(group, lengths, strict=True)):
            ids[row, :n] = s.prompt[0]
            mask[row, :n] = 1
        states = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        start = torch.full((len(group), 1), self._decoder_start, dtype=torch.long, device=self.device)
        out = self.model(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=start, use_cache=True)
        self_layers = _layers(out.cache.self_attention_cache)
        cross_layers = _layers(out.cache.cross_attention_cache)
        for row, (s, n) in enumerate(zip(group, lengths, strict=True)):
            # Copies, not views: these live as long as the sequence, and a view would keep the
            # whole batch's tensors alive. (The self-attention caches are replaced every step.)
            s.encoder_states = states[row : row + 1, :n].clone()
            s.self_kv = [(k[row : row + 1], v[row : row + 1]) for k, v in self_layers]
            s.cross_kv = [(k[row : row + 1, :, :n].clone(), v[row : row + 1, :, :n].clone()) for k, v in cross_layers]
        return out.logits[:, -1]

    def _decode_causal(self, group: list[_Sequence]) -> torch.Tensor:
        from transformers import DynamicCache

        lengths = [s.length for s in group]
        longest = max(lengths)
        pads = [longest - n for n in lengths]
        n_layers = len(group[0].self_kv)
        cache = DynamicCache(
            [
                (_cat_left([s.self_kv[i][0] for s in group], pads), _cat_left([s.self_kv[i][1] for s in group], pads))
                for i in range(n_layers)
            ]
        )
        mask = torch.ones(len(group), longest + 1, dtype=torch.long, device=self.device)
        for row, pad in enumerate(pads):
            mask[row, :pad] = 0
        ids = torch.tensor([[s.last] for s in group], dtype=torch.long, device=self.device)
        positions = torch.tensor([[n] for n in lengths], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
        )
        layers = _layers(out.cache)
        for row, (s, pad) in enumerate(zip(group, pads, strict=True)):
            s.self_kv = [(k[row : row + 1, :, pad:], v[row : row + 1, :, pad:]) for k, v in layers]
        return out.logits[:, -1]

    def _decode_seq2seq(self, group: list[_Sequence]) -> torch.Tensor:
        from transformers import DynamicCache, EncoderDecoderCache

        sources = [s.encoder_states.shape[1] for s in group]  # type: ignore[union-attr]
        longest = max(sources)
        pads = [longest - n for n in sources]
        lengths = [s.length for s in group]
        target_pads = [max(lengths) - n for n in lengths]  # zero unless _pad_decoder
        n_layers = len(group[0].self_kv)
        self_cache = DynamicCache(
            [
                (
                    _cat_left([s.self_kv[i][0] for s in group], target_pads),
                    _cat_left([s.self_kv[i][1] for s in group], target_pads),
                )
                for i in range(n_layers)
            ]
        )
        cross_cache = DynamicCache(
            [
                (
                    _cat_right([s.cross_kv[i][0] for s in group], pads),
                    _cat_right([s.cross_kv[i][1] for s in group], pads),
                )
                for i in range(n_layers)
            ]
        )
        states = _cat_right([s.encoder_states for s in group], pads, dim=1)  # type: ignore[misc]
        mask = torch.ones(len(group), longest, dtype=torch.long, device=self.device)
        for row, pad in enumerate(pads):
            if pad:
                mask[row, -pad:] = 0
        decoder_mask = torch.ones(len(group), max(lengths) + 1, dtype=torch.long, device=self.device)
        for row, pad in enumerate(target_pads):
            decoder_mask[row, :pad] = 0
        ids = torch.tensor([[s.last] for s in group], dtype=torch.long, device=self.device)
        out = self.model(
            encoder_outputs=(states,),
            attention_mask=mask,
            decoder_input_ids=ids,
            decoder_attention_mask=decoder_mask,
            cache=EncoderDecoderCache(self_cache, cross_cache),
            use_cache=True,
        )
        layers = _layers(out.cache.self_attention_cache)
        for row, (s, pad) in enumerate(zip(group, target_pads, strict=True)):
            s.self_kv = [(k[row : row + 1, :, pad:], v[row : row + 1, :, pad:]) for k, v in layers]
        return out.logits[:, -1]


def _by_length(sequences: list[_Sequence]) -> list[list[_Sequence]]:
    groups: dict[int, list[_Sequence]] = {}
    for s in sequences:
        groups.setdefault(s.length, []).append(s)
    return list(groups.values())


def _cat_left(tensors: list[torch.Tensor], pads: list[int]) -> torch.Tensor:
    """Concatenate [1, heads, len, dim] tensors on the batch axis, left-padding ``len`` with zeros."""
    if not any(pads):
        return torch.cat(tensors)
    return torch.cat([F.pad(t, (0, 0, p, 0)) if p else t for t, p in zip(tensors, pads, strict=True)])


def _cat_right(tensors: list[torch.Tensor], pads: list[int], dim: int = 2) -> torch.Tensor:
    """Concatenate on the batch axis, right-padding axis ``dim`` with zeros."""
    if not any(pads):
        return torch.cat(tensors)
    padded = []
    for t, p in zip(tensors, pads, strict=True):
        if p:
            widths = [0, 0] * (t.dim() - 1 - dim) + [0, p]
            t = F.pad(t, widths)
        padded.append(t)
    return torch.cat(padded)
