"""A Hugging Face causal or seq2seq LM, decoded step by step with continuous batching.

The forward passes are the engines': :mod:`modelplex_text.causal` (one shared, left-aligned
KV cache built from transformers cache layers, full and sliding-window; chunked prefill;
prefix caching) and :mod:`modelplex_text.seq2seq` (per-sequence caches). This module loads
the model and its tokenizer, refuses at load what the engines cannot serve correctly
(:mod:`modelplex_text.checks`), and turns each sequence's logits into its next token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch

from modelplex import InvalidInputError, LoadContext, ModelLoadError, NextToken, SamplingParams, TextGenerator
from modelplex.kit import module_bytes, prepack_linears
from modelplex.tasks.text_generation import ChatMessage
from modelplex_text import checks
from modelplex_text.causal import CausalEngine, CausalSequence
from modelplex_text.kvcache import cache_layout
from modelplex_text.plugin import Family
from modelplex_text.prefix import PrefixCache
from modelplex_text.sampling import Sampler
from modelplex_text.seq2seq import Seq2SeqEngine, Seq2SeqSequence
from modelplex_text.settings import TextSettings
from modelplex_text.tokens import TokenBytes, chat_template, render_chat
from modelplex_text.weights import Source, resolve

log = logging.getLogger(__name__)

__all__ = ["HFTextGenerator"]

# transformers builds models under process-wide patches (meta-device init), so two
# instances loading at once on their own threads break each other: load one at a time.
_LOAD_LOCK = threading.Lock()

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_TOLERANCE = {torch.float32: 1e-3, torch.float16: 3e-2, torch.bfloat16: 6e-2}


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
        self.engine: CausalEngine | Seq2SeqEngine | None = None
        self.context_length = 0
        self._eos: frozenset[int] = frozenset()
        self._template: str | None = None
        self._bytes: TokenBytes | None = None

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
        self.eos_token_ids = tuple(sorted(self._eos))
        self.bos_token_id = self.tokenizer.bos_token_id
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        if self.settings.cpu_prepack and self.device.type == "cpu":
            rows = int(getattr(self.ctx.task_settings, "max_batch_size", 16))
            packed = prepack_linears(self.model, rows=rows, check=self._logits_of_a_few_tokens)
            log.info("model %r: %d linear layers packed for oneDNN", self.ctx.model_name, packed)
        self._template = chat_template(self.tokenizer, self.settings.chat_template, self.settings.chat_template_file)
        self.has_chat_template = self._template is not None
        self._bytes = TokenBytes(self.tokenizer)
        if self.is_encoder_decoder:
            self.context_length = self.settings.context_length or self._context_length()
            self.engine = Seq2SeqEngine(self.model, self.device)
        else:
            self.engine = self._causal_engine()

    def _logits_of_a_few_tokens(self) -> torch.Tensor:
        """The model's logits for 4 tokens (of a seq2seq model: its decoder's, for 2 tokens
        given those 4): how prepack_linears checks that packing changes nothing but rounding."""
        ids = torch.arange(4, device=self.device)[None] % self.vocab_size
        mask = torch.ones_like(ids)
        if self.is_encoder_decoder:
            return self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :2]).logits
        return self.model(input_ids=ids, attention_mask=mask).logits

    def _causal_engine(self) -> CausalEngine:
        config = self.model.config
        name = self.ctx.model_name
        try:
            layout = cache_layout(config)
        except ValueError as e:
            raise ModelLoadError(
                f"model {name!r} ({config.model_type}) has {e} layers, whose cache is not attention keys and "
                "values: modelplex's continuous batching serves attention-only causal LMs (full or sliding window)"
            ) from None
        limit = checks.rope_limit(config)
        self.context_length = self.settings.context_length or min(self._context_length(), limit or 1 << 62)
        checks.check_rope(config, name, self.context_length)
        prefix = None
        if self.settings.prefix_cache_tokens:
            prefix = PrefixCache(self.settings.prefix_block_tokens, self.settings.prefix_cache_tokens)
        engine = CausalEngine(
            self.model, layout, self.device, chunk_tokens=self.settings.prefill_chunk_tokens, prefix_cache=prefix
        )
        windows = [k.window for k in layout if k.window is not None]
        checks.probe(
            name,
            config.model_type,
            lambda prompts, join_at: self._probe_logits(engine, prompts, join_at),
            checks.reference_logits(self.model, self.device),
            self.vocab_size,
            window=min(windows) if windows else None,
            tolerance=_TOLERANCE[self.dtype],
        )
        return engine

    @torch.inference_mode()
    def _probe_logits(self, engine: CausalEngine, prompts: list[list[int]], join_at: list[int]) -> list[torch.Tensor]:
        """Each prompt's logits over three steps, prompt ``i`` joining at step ``join_at[i]``
        (greedy tokens fed back)."""
        seqs = [CausalSequence(p, Sampler(SamplingParams(), p, self.device)) for p in prompts]
        rows: list[list[torch.Tensor]] = [[] for _ in prompts]
        step = 0
        while any(len(r) < 3 for r in rows):
            active = [i for i, s in enumerate(seqs) if join_at[i] <= step and len(rows[i]) < 3]
            results = engine.step([seqs[i] for i in active])
            for i in active:
                row = results[id(seqs[i])]
                if isinstance(row, Exception):
                    raise row
                if row is not None:
                    rows[i].append(row.float())
                    seqs[i].last = int(row.argmax())
            for i, s in enumerate(seqs):
                if len(rows[i]) == 3 and not s.released:
                    engine.release(s)
            step += 1
        engine.step([])  # the released rows leave the batch
        return [torch.stack(r) for r in rows]

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
        config = self.model.config.get_text_config(decoder=True)
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
        tokens = 0
        while tokens < 2:
            (token,) = self.step([seq])
            if isinstance(token, Exception):
                raise token
            tokens += token is not None
        self.release(seq)
        self.step([])

    def unload(self) -> None:
        if self.engine is not None:
            self.engine.clear()
        self.engine = None
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        return module_bytes(self.model)

    # -- text ----------------------------------------------------------------------------------

    def tokenize(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        """Thread-safe, as the server requires (it runs on the server's tokenizing executor,
        possibly while ``step`` and ``detokenize`` run on the instance's thread): it only reads
        the tokenizer, and encodes without truncation or padding, the settings ``warmup`` left
        the fast tokenizer in, so the call never reconfigures (mutably borrows) the Rust
        tokenizer that another thread may be using."""
        ids: list[int] = self.tokenizer(prompt, truncation=False, padding=False, add_special_tokens=add_special_tokens)[
            "input_ids"
        ]
        if not ids:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise InvalidInputError("the prompt is empty, and this model has no start token to begin from")
            ids = [bos]
        return ids

    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        # No clean-up of spaces: it rewrites text across token boundaries (" ." -> "."), which
        # would make a window's decoding disagree with the whole text's.
        return str(
            self.tokenizer.decode(
                list(token_ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
            )
        )

    def token_bytes(self, token_id: int) -> bytes:
        assert self._bytes is not None
        return self._bytes(token_id)

    def render_chat(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        if self._template is None:
            raise InvalidInputError(
                f"model {self.ctx.model_name!r} has no chat template: its folder has none, and no "
                "settings.chat_template (or chat_template_file) is configured; send a prompt instead"
            )
        return render_chat(self.tokenizer, self._template, messages, add_generation_prompt)

    def is_eos(self, token_id: int) -> bool:
        return token_id in self._eos

    # -- decoding ------------------------------------------------------------------------------

    def start(self, prompt_ids: Sequence[int], params: SamplingParams) -> CausalSequence | Seq2SeqSequence:
        sampler = Sampler(params, prompt_ids, self.device, self._eos)
        if self.is_encoder_decoder:
            return Seq2SeqSequence(list(prompt_ids), sampler)
        return CausalSequence(list(prompt_ids), sampler)

    def release(self, sequence: Any) -> None:
        assert self.engine is not None
        self.engine.release(sequence)

    @torch.inference_mode()
    def step(self, sequences: Sequence[Any]) -> list[NextToken | Exception | None]:
        assert self.engine is not None
        return self._pick(sequences, self.engine.step(sequences))  # type: ignore[arg-type]

    @torch.inference_mode()
    def prefill(self, sequences: Sequence[Any]) -> list[NextToken | Exception | None]:
        assert self.engine is not None
        return self._pick(sequences, self.engine.prefill(sequences))  # type: ignore[arg-type]

    def _pick(self, sequences: Sequence[Any], rows: dict[int, Any]) -> list[NextToken | Exception | None]:
        """Each sequence's next token from its row of logits (or its failure, or None)."""
        logits = {key: row for key, row in rows.items() if isinstance(row, torch.Tensor)}
        # Plain greedy rows take one argmax and one device-to-host copy together.
        plain = [s for s in sequences if id(s) in logits and s.sampler.is_plain_greedy]
        picked: dict[int, NextToken] = {}
        if plain:
            best = torch.stack([logits[id(s)] for s in plain]).argmax(dim=-1).tolist()
            for s, token_id in zip(plain, best, strict=True):
                picked[id(s)] = s.sampler.take(token_id)
        out: list[NextToken | Exception | None] = []
        for s in sequences:
            if id(s) not in rows:
                out.append(RuntimeError("the decode loop gave no result for a sequence"))
                continue
            row = rows[id(s)]
            if row is None or isinstance(row, Exception):
                out.append(row)
                continue
            try:
                token = picked.get(id(s)) or s.sampler(row)
            except Exception as e:  # one sequence's sampling failed: it alone fails
                log.exception("sampling failed for one sequence")
                out.append(e)
                continue
            s.last = token.token_id
            out.append(token)
        return out
