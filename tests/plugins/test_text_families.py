"""Every causal family served today, as a tiny random model saved and loaded through
``from_pretrained``: greedy tokens equal ``model.generate``'s token for token, alone, joined
into a running batch at different steps, and with long prompts prefilled in chunks while
others decode. The sliding windows are 16 tokens and the prompts up to 70, so the sliding
layers' caches are full and the batch's rows are of very different lengths."""

from __future__ import annotations

import pytest

from modelplex import LoadContext, SamplingParams, WeightsChoice
from text_models import FAMILIES, save_family

# 2, 37 and 84 tokens with the tiny tokenizer.
PROMPTS = ["hello world", "the quick brown fox jumps over the lazy dog " * 4, "summarize: streaming tokens " * 14]
STEPS = 12


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: save_family(name, root / name) for name in FAMILIES}


def generator(folder, **settings):
    from modelplex_text.generator import HFTextGenerator
    from modelplex_text.plugin import FAMILIES as SPECS
    from modelplex_text.plugin import build_specs
    from modelplex_text.settings import TextSettings

    spec = {s.name: s for s in build_specs()}["causal-lm"]
    family = {f.name: f for f in SPECS}["causal-lm"]
    ctx = LoadContext("m", spec, spec.variant(None), WeightsChoice.parse(str(folder)), "cpu", TextSettings(**settings))
    g = HFTextGenerator(family, ctx)
    g.load()
    return g


def expected_tokens(folder, g, prompts=PROMPTS):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for prompt in prompts:
        ids = torch.tensor([g.tokenize(prompt)])
        tokens = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=STEPS,
            min_new_tokens=STEPS,
            do_sample=False,
            pad_token_id=0,
        )
        out.append(tokens[0, ids.shape[1] :].tolist())
    return out


def run(g, join_every):
    """Sequence i joins at step ``join_every * i``; a step may give a sequence no token (its
    prompt is still being prefilled in chunks); each leaves after STEPS tokens."""
    seqs, outs, step = [], [], 0
    while len(seqs) < len(PROMPTS) or any(len(o) < STEPS for o in outs):
        if len(seqs) < len(PROMPTS) and step >= join_every * len(seqs):
            seqs.append(g.start(g.tokenize(PROMPTS[len(seqs)]), SamplingParams()))
            outs.append([])
        active = [(s, o) for s, o in zip(seqs, outs, strict=True) if len(o) < STEPS]
        for (s, o), token in zip(active, g.step([s for s, _ in active]), strict=True):
            assert not isinstance(token, Exception), token
            if token is not None:
                o.append(token.token_id)
                if len(o) == STEPS:
                    g.release(s)
        step += 1
    return outs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_equals_model_generate_alone_and_batched(family, folders):
    g = generator(folders[family])
    expected = expected_tokens(folders[family], g)
    assert max(len(g.tokenize(p)) for p in PROMPTS) > 4 * 16  # past the sliding windows
    assert [run_one(g, p) for p in PROMPTS] == expected
    assert run(g, join_every=3) == expected  # each joins a running batch
    assert run(g, join_every=0) == expected  # all start together


@pytest.mark.parametrize("family", list(FAMILIES))
def test_with_every_linear_layer_packed_greedy_still_equals_model_generate(family, folders, monkeypatch):
    """The tiny models' layers are under prepack's size floor; with the floor at 0 every linear
    layer is packed for oneDNN (as a real model's are on a CPU), and the tokens are those of the
    plain model's ``generate``."""
    from modelplex import prepack

    monkeypatch.setattr(prepack, "MIN_WEIGHTS", 0)
    g = generator(folders[family])
    kinds = [type(m).__name__ for m in g.model.modules()]
    assert "_PackedLinear" in kinds and "Linear" not in kinds and "Conv1D" not in kinds
    expected = expected_tokens(folders[family], g)
    assert run(g, join_every=3) == expected


def test_a_model_whose_code_reads_its_weights_runs_unpacked(tmp_path, monkeypatch, caplog):
    """BLOOM with ``slow_but_exact`` slices its layers' weights in its forward, which a packed
    layer cannot do: the load-time check undoes the packing, and the model serves unpacked."""
    import logging

    from modelplex import prepack

    monkeypatch.setattr(prepack, "MIN_WEIGHTS", 0)
    fields = dict(hidden_size=32, n_layer=2, n_head=4, pretraining_tp=2, slow_but_exact=True)
    folder = save_family("bloom-exact", tmp_path / "bloom", config=("BloomConfig", fields))
    with caplog.at_level(logging.WARNING, logger="modelplex.prepack"):
        g = generator(folder)
    assert "undone" in caplog.text
    assert "_PackedLinear" not in {type(m).__name__ for m in g.model.modules()}
    assert run(g, join_every=3) == expected_tokens(folder, g)


@pytest.mark.parametrize("family", ["gemma3", "mistral", "llama"])
def test_long_prompts_prefilled_in_chunks_while_others_decode(family, folders):
    g = generator(folders[family], prefill_chunk_tokens=16)
    expected = expected_tokens(folders[family], g)
    assert run(g, join_every=2) == expected
    g.step([])  # the last released rows leave the batch at the next step
    assert g.engine.groups == []


@pytest.mark.parametrize(("family", "max_groups"), [("gemma3", 4), ("llama", 4), ("llama", 2)])
def test_sequences_of_very_different_lengths_decode_in_groups(family, max_groups, folders):
    """With no padding allowed, each newcomer longer or shorter than the running rows decodes in a
    pass of its own (up to ``max_groups`` passes, then it joins the group it pads least): the
    tokens are the same."""
    g = generator(folders[family])
    g.engine.separate_pass_padding = 0
    g.engine.max_groups = max_groups
    expected = expected_tokens(folders[family], g)
    groups = []
    step = g.engine.step

    def counting(sequences):
        out = step(sequences)
        groups.append(len(g.engine.groups))
        return out

    g.engine.step = counting
    assert run(g, join_every=3) == expected
    assert max(groups) == min(max_groups, len(PROMPTS))
    g.step([])
    assert g.engine.groups == []


def run_one(g, prompt):
    seq = g.start(g.tokenize(prompt), SamplingParams())
    out = []
    while len(out) < STEPS:
        (token,) = g.step([seq])
        if token is not None:
            out.append(token.token_id)
    g.release(seq)
    return out


REFUSED = {
    "mamba": (
        ("MambaConfig", dict(hidden_size=32, num_hidden_layers=2, state_size=4)),
        {},
        "has linear_attention layers, whose cache is not attention keys and values",
    ),
    "llama4": (
        (
            "Llama4TextConfig",
            dict(
                hidden_size=32,
                intermediate_size=64,
                intermediate_size_mlp=64,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=8,
            ),
        ),
        {},
        "has chunked_attention layers",
    ),
    "dynamic-rope": (
        (
            "LlamaConfig",
            dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=256,
                rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
            ),
        ),
        {"context_length": 512},
        "scales its rotary positions by the longest sequence in a batch past 256 tokens, so a sequence's "
        "output would depend on the others batched with it: set settings.context_length to at most 256",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_cannot_be_served_correctly_is_refused_at_load(case, tmp_path):
    from modelplex import ModelLoadError

    config, settings, message = REFUSED[case]
    folder = save_family(case, tmp_path / case, config=config)
    with pytest.raises(ModelLoadError) as info:
        generator(folder, **settings)
    assert message in str(info.value)


def test_a_batch_dependent_rope_within_its_window_is_served(tmp_path):
    config, _, _ = REFUSED["dynamic-rope"]
    g = generator(save_family("dynamic-rope", tmp_path / "rope", config=config))
    assert g.context_length == 256


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_prefix_caching_restores_the_cache_of_a_shared_beginning(family, folders):
    """Prompts sharing a 37-token beginning (a system prompt): the second prompt prefills only
    past the cached 32 tokens (two 16-token blocks, past gemma3's 16-token window), and every
    prompt's greedy tokens still equal model.generate's."""
    g = generator(folders[family], prefix_cache_tokens=1024, prefix_block_tokens=16)
    system = PROMPTS[1]
    prompts = [system + " hello world", system + " summarize: streaming", system + " hello world"]
    expected = expected_tokens(folders[family], g, prompts)
    cache = g.engine.prefix_cache
    assert run_one(g, prompts[0]) == expected[0]
    assert cache.hits == 0 and cache.tokens > 0
    assert run_one(g, prompts[1]) == expected[1]
    assert (cache.hits, cache.hit_tokens) == (1, 32)
    assert run_one(g, prompts[2]) == expected[2]  # the whole prompt but its last token was cached
    assert cache.hits == 2 and cache.hit_tokens == 32 + (len(g.tokenize(prompts[2])) - 1) // 16 * 16


@pytest.mark.parametrize("family", ["gemma3", "bloom"])
def test_the_conformance_kit_passes(family, folders):
    from modelplex.conformance import check_model

    check_model({"spec": "causal-lm", "name": family, "weights": str(folders[family]), "devices": ["cpu"]})


@pytest.mark.parametrize("family", ["gemma3", "gpt_neox"])
def test_sequences_sitting_steps_out_get_the_same_tokens(family, folders):
    """A stream whose client reads slowly sits steps out: its row leaves the batch (a copy of it
    kept) and joins again, while the others go on and finish."""
    g = generator(folders[family])
    expected = expected_tokens(folders[family], g)
    seqs = [g.start(g.tokenize(p), SamplingParams()) for p in PROMPTS]
    outs: list[list[int]] = [[] for _ in PROMPTS]
    step = 0
    while any(len(o) < STEPS for o in outs):
        # Sequence i sits out every step whose number is a multiple of i + 2.
        active = [i for i in range(len(PROMPTS)) if len(outs[i]) < STEPS and (step == 0 or step % (i + 2))]
        for i, token in zip(active, g.step([seqs[i] for i in active]), strict=True):
            outs[i].append(token.token_id)
            if len(outs[i]) == STEPS:
                g.release(seqs[i])
        step += 1
    assert outs == expected
