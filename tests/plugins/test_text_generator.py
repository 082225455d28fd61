"""HFTextGenerator in-process: its step-by-step decoding with sequences joining a running
batch at different steps gives each sequence the tokens it gets alone, and model.generate's."""

from __future__ import annotations

import pytest

from modelplex import LoadContext, SamplingParams, WeightsChoice
from text_models import model_dirs, save_bart, save_llama

PROMPTS = ["hello world", "the quick brown fox jumps over", "日本語", "a", "summarize: hello modelplex"]
STEPS = 20


def generator(spec_name, folder, **settings):
    from modelplex_text.generator import HFTextGenerator
    from modelplex_text.plugin import FAMILIES, build_specs
    from modelplex_text.settings import TextSettings

    spec = {s.name: s for s in build_specs()}[spec_name]
    family = {f.name: f for f in FAMILIES}[spec_name]
    ctx = LoadContext(
        spec_name, spec, spec.variant(None), WeightsChoice.parse(str(folder)), "cpu", TextSettings(**settings)
    )
    g = HFTextGenerator(family, ctx)
    g.load()
    return g


def alone(g, prompt, params):
    seq = g.start(g.tokenize(prompt), params)
    out = [g.step([seq])[0].token_id for _ in range(STEPS)]
    g.release(seq)
    return out


def staggered(g, params):
    """Sequence i joins the running batch at step 3 * i; each leaves after STEPS tokens."""
    seqs, outs = [], []
    step = 0
    while len(seqs) < len(PROMPTS) or any(len(o) < STEPS for o in outs):
        if step % 3 == 0 and len(seqs) < len(PROMPTS):
            seqs.append(g.start(g.tokenize(PROMPTS[len(seqs)]), params))
            outs.append([])
        active = [(s, o) for s, o in zip(seqs, outs, strict=True) if len(o) < STEPS]
        for (s, o), token in zip(active, g.step([s for s, _ in active]), strict=True):
            o.append(token.token_id)
            if len(o) == STEPS:
                g.release(s)
        step += 1
    return outs


@pytest.fixture(scope="module")
def extra_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("more-models")
    return {"bart": save_bart(root / "bart"), "llama": save_llama(root / "llama")}


def folder_of(name, extra_dirs):
    return extra_dirs[name] if name in extra_dirs else model_dirs()[name]


MODELS = [("gpt2", "gpt2"), ("causal-lm", "llama"), ("t5-small", "t5"), ("seq2seq-lm", "bart")]


@pytest.mark.parametrize("spec,folder", MODELS)
@pytest.mark.parametrize(
    "params", [SamplingParams(), SamplingParams(temperature=3.0, top_k=40, top_p=0.9, seed=5)], ids=["greedy", "seeded"]
)
def test_joining_a_running_batch_changes_no_sequence(spec, folder, params, extra_dirs):
    g = generator(spec, folder_of(folder, extra_dirs))
    expected = [alone(g, p, params) for p in PROMPTS]
    assert staggered(g, params) == expected
    assert len({tuple(e) for e in expected}) > 1


@pytest.mark.parametrize("spec,folder", MODELS)
def test_sequences_starting_together_equal_each_alone(spec, folder, extra_dirs):
    """Several new sequences in one step: prefilled together (causal LMs: one padded pass)."""
    g = generator(spec, folder_of(folder, extra_dirs))
    params = SamplingParams()
    expected = [alone(g, p, params) for p in PROMPTS]
    seqs = [g.start(g.tokenize(p), params) for p in PROMPTS]
    outs: list[list[int]] = [[] for _ in PROMPTS]
    for _ in range(STEPS):
        for o, token in zip(outs, g.step(seqs), strict=True):
            o.append(token.token_id)
    assert outs == expected


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("spec,folder", MODELS)
def test_greedy_equals_model_generate(spec, folder, packed, extra_dirs, monkeypatch):
    """Also with every linear layer packed for oneDNN (the tiny models' layers are under
    prepack's size floor; a real model's are over it): T5 reads its output layer's dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from modelplex import prepack

    if packed:
        monkeypatch.setattr(prepack, "MIN_WEIGHTS", 0)
    path = folder_of(folder, extra_dirs)
    g = generator(spec, path)
    assert ("_PackedLinear" in {type(m).__name__ for m in g.model.modules()}) is packed
    causal = spec in ("gpt2", "causal-lm")
    auto = AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM
    model = auto.from_pretrained(path).eval()
    for prompt in PROMPTS:
        ids = torch.tensor([g.tokenize(prompt)])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=STEPS,
            min_new_tokens=STEPS,
            do_sample=False,
            pad_token_id=model.config.pad_token_id or 0,
        )
        start = ids.shape[1] if causal else 1
        assert alone(g, prompt, SamplingParams()) == out[0, start:].tolist(), prompt


def test_repetition_penalty_and_logprobs():
    g = generator("gpt2", model_dirs()["gpt2"])
    plain = alone(g, "hello world", SamplingParams())
    penalised = alone(g, "hello world", SamplingParams(repetition_penalty=5.0))
    assert len(set(penalised)) >= len(set(plain)) and penalised != plain
    seq = g.start(g.tokenize("hello"), SamplingParams(logprobs=2))
    token = g.step([seq])[0]
    assert token.logprob is not None and len(token.top) == 2 and token.top[0].token_id == token.token_id


def test_a_tiny_temperature_picks_greedily():
    import torch

    from modelplex_text.sampling import Sampler

    logits = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 10
    for params in (SamplingParams(temperature=1e-40), SamplingParams(temperature=1e-40, top_k=5, top_p=0.5)):
        assert Sampler(params, [], torch.device("cpu"))(logits).token_id == int(logits.argmax())


def test_a_sequence_whose_sampling_fails_fails_alone():
    g = generator("gpt2", model_dirs()["gpt2"])
    expected = alone(g, "hello", SamplingParams())
    ok = g.start(g.tokenize("hello"), SamplingParams())
    bad = g.start(g.tokenize("hello world"), SamplingParams(temperature=1.0, seed=1))

    def boom(scores):
        raise RuntimeError("boom")

    bad.sampler._sample = boom
    first, failed = g.step([ok, bad])
    assert isinstance(failed, RuntimeError) and first.token_id == expected[0]
    g.release(bad)
    assert [g.step([ok])[0].token_id for _ in range(STEPS - 1)] == expected[1:]


def test_seq2seq_sequences_prefilled_together_own_their_memory():
    """Their encoder states and cross-attention caches are copies, not views of the batch's."""
    g = generator("t5-small", model_dirs()["t5"])
    seqs = [g.start(g.tokenize(p), SamplingParams()) for p in ("a", "summarize: streaming tokens over grpc hello")]
    g.step(seqs)
    for s in seqs:
        for t in (s.encoder_states, *(x for kv in s.cross_kv for x in kv)):
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
