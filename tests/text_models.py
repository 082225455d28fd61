"""Tiny GPT-2 and T5 models with random weights and a byte-level BPE tokenizer built on the
spot, saved as Hugging Face folders, so that tests load them through ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, hello modelplex",
    "translate English to German: the house is wonderful",
    "summarize: streaming tokens over grpc",
    "héllo wörld, naïve café, 日本語のテキスト, emoji 🙂🚀",
] * 20


def tokenizer(eos: str = "<|endoftext|>", specials: tuple[str, ...] = (), append_eos: bool = False):
    """A byte-level BPE tokenizer (so a multi-byte character spans tokens) as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=[*specials, eos], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
        )
    extra = {"pad_token": specials[0]} if specials else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, model_max_length=10**30, **extra)


def save_gpt2(path: Path, *, n_positions: int = 128, seed: int = 1, n_embd: int = 32) -> Path:
    """A 2-layer GPT-2 with random weights and its tokenizer, saved to ``path``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer()
    tok.bos_token = tok.eos_token
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=2,
        n_head=2,
        initializer_range=0.5,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_t5(path: Path, *, seed: int = 1) -> Path:
    """A 2-layer T5 with random weights and its tokenizer (pad 0, eos 1, appended to prompts)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tokenizer(eos="</s>", specials=("<pad>",), append_eos=True)
    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        n_positions=64,
        initializer_factor=8.0,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


_DIRS: dict[str, Path] = {}


def model_dirs() -> dict[str, Path]:
    """The tiny models' folders, built once per test process: ``gpt2``, ``gpt2-long`` (a
    1024-token window) and ``t5``."""
    if not _DIRS:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="modelplex-text-"))
        atexit.register(shutil.rmtree, root, True)
        _DIRS["gpt2"] = save_gpt2(root / "gpt2")
        _DIRS["gpt2-long"] = save_gpt2(root / "gpt2-long", n_positions=1024)
        _DIRS["t5"] = save_t5(root / "t5")
    return _DIRS


def weights_root() -> str:
    """The folder holding every tiny model: a server's ``weights_roots`` for LoadModel by path."""
    return str(model_dirs()["gpt2"].parent)


def text_model(name: str, spec: str, folder: str, **fields: object) -> dict[str, object]:
    """A [[models]] entry for one of the tiny models."""
    return {"spec": spec, "name": name, "weights": str(model_dirs()[folder]), "devices": ["cpu"], **fields}


def reference(folder: str, prompt: str, max_new_tokens: int) -> list[int]:
    """Greedy tokens of ``model.generate`` in-process, without the server."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = model_dirs()[folder]
    seq2seq = AutoConfig.from_pretrained(path).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(path).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(path)(prompt)["input_ids"]])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=model.config.pad_token_id if seq2seq else model.config.eos_token_id,
    )
    return out[0, 1 if seq2seq else ids.shape[1] :].tolist()


def save_bart(path: Path, *, seed: int = 1) -> Path:
    """A 2-layer BART (absolute decoder positions) with random weights and its tokenizer."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    tok = tokenizer(eos="</s>", specials=("<pad>",), append_eos=True)
    config = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_eos_token_id=None,
        init_std=0.5,
    )
    torch.manual_seed(seed)
    BartForConditionalGeneration(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_llama(path: Path, *, seed: int = 1) -> Path:
    """A 2-layer Llama (rotary positions, grouped-query attention) with random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer()
    tok.bos_token = tok.eos_token
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=eos,
        eos_token_id=eos,
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


# Tiny configs of the causal families served today: each with its own cache layout and
# position scheme (sliding windows of 16 tokens, so that test prompts are longer than them).
WINDOW = 16
_COMMON = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, max_position_embeddings=256)
FAMILIES: dict[str, tuple[str, dict[str, object]]] = {
    "llama": ("LlamaConfig", dict(_COMMON, num_hidden_layers=2, num_key_value_heads=2)),
    "llama-rope-scaled": (
        "LlamaConfig",
        dict(
            _COMMON,
            num_hidden_layers=2,
            num_key_value_heads=1,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        ),
    ),
    "qwen2": ("Qwen2Config", dict(_COMMON, num_hidden_layers=2, num_key_value_heads=2)),
    "qwen2-sliding": (
        "Qwen2Config",
        dict(
            _COMMON,
            num_hidden_layers=3,
            num_key_value_heads=2,
            use_sliding_window=True,
            sliding_window=WINDOW,
            max_window_layers=1,
        ),
    ),
    "mistral": ("MistralConfig", dict(_COMMON, num_hidden_layers=2, num_key_value_heads=2, sliding_window=WINDOW)),
    "gemma2": (
        "Gemma2Config",
        dict(
            _COMMON,
            num_hidden_layers=3,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=WINDOW,
            tie_word_embeddings=False,  # tied, a random Gemma repeats its input token
            query_pre_attn_scalar=1,  # sharp attention: positions matter (256 makes it near uniform)
        ),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        dict(
            _COMMON,
            num_hidden_layers=3,
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=WINDOW,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            tie_word_embeddings=False,
            query_pre_attn_scalar=1,
        ),
    ),
    "phi": ("PhiConfig", dict(_COMMON, num_hidden_layers=2, partial_rotary_factor=0.5)),
    "phi3": ("Phi3Config", dict(_COMMON, num_hidden_layers=2, num_key_value_heads=2)),
    "gpt_neox": ("GPTNeoXConfig", dict(_COMMON, num_hidden_layers=2, rotary_pct=0.5)),
    "bloom": ("BloomConfig", dict(hidden_size=32, n_layer=2, n_head=4)),  # ALiBi, no position ids
    "opt": (
        "OPTConfig",
        dict(hidden_size=32, ffn_dim=64, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=256),
    ),
}


def save_family(family: str, path: Path, *, seed: int = 1, config: tuple[str, dict[str, object]] | None = None) -> Path:
    """A tiny model of ``family`` (a key of FAMILIES, or any config class and fields given as
    ``config``) with random weights and its tokenizer."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    tok = tokenizer()
    tok.bos_token = tok.eos_token
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    name, fields = config or FAMILIES[family]
    made = getattr(transformers, name)(
        vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **fields
    )
    for key in ("initializer_range", "init_std"):
        if hasattr(made, key):
            setattr(made, key, 0.5)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(made).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma's chat template, in short: it starts with the BOS token itself."""


def save_chat_model(path: Path, *, template: bool = True, seed: int = 1) -> Path:
    """A tiny Gemma 3 (sliding window 16) whose tokenizer adds a BOS to every prompt, has the turn
    markers as special tokens, and (``template``) Gemma's chat template; both ``<eos>`` and
    ``<end_of_turn>`` end a generation."""
    import torch
    from tokenizers import processors
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    specials = ("<pad>", "<bos>", "<start_of_turn>", "<end_of_turn>")
    tok = tokenizer(eos="<eos>", specials=specials)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    bos = tok.convert_tokens_to_ids("<bos>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    tok.bos_token = "<bos>"
    if template:
        tok.chat_template = CHAT_TEMPLATE
    eos, end_of_turn = tok.convert_tokens_to_ids(["<eos>", "<end_of_turn>"])
    _, fields = FAMILIES["gemma3"]
    config = Gemma3TextConfig(
        vocab_size=len(tok), bos_token_id=bos, eos_token_id=[eos, end_of_turn], pad_token_id=tok.pad_token_id, **fields
    )
    config.initializer_range = 0.5
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id = [eos, end_of_turn]
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
