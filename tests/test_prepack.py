"""modelplex.kit.prepack_linears: which layers it swaps, which it leaves, and that the swapped
module computes what the plain one does (float32, to rounding) for any number of rows."""

from __future__ import annotations

import logging

import pytest
import torch

from modelplex import prepack
from modelplex.kit import prepack_linears


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.linear = torch.nn.Linear(24, 32)
        self.no_bias = torch.nn.Linear(32, 40, bias=False)
        self.conv1d = Conv1D(16, 40)  # GPT-2's transposed linear: weight (40, 16)
        self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.hooked = torch.nn.Linear(16, 16)
        self.hooked.register_forward_hook(lambda module, args, out: out * 2)
        self.in_float64 = torch.nn.Linear(16, 8).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1d(self.no_bias(torch.relu(self.linear(x))))
        h = self.attention(h, h, h, need_weights=False)[0]
        return self.in_float64(self.hooked(h).double()).float()


def test_the_swapped_module_equals_the_plain_one_for_any_rows():
    torch.manual_seed(0)
    block = Block().eval()
    inputs = [torch.randn(rows, 5, 24) for rows in (1, 3, 16, 40)]
    with torch.inference_mode():
        want = [block(x) for x in inputs]
        swapped = prepack_linears(block, rows=16, min_weights=0)
        got = [block(x) for x in inputs]
    # linear, no_bias, conv1d: not the attention's own projection (a Linear subclass its owner
    # reads), not the hooked layer, not the float64 one.
    assert swapped == 3
    assert type(block.linear).__name__ == type(block.conv1d).__name__ == "_PackedLinear"
    assert type(block.attention.out_proj) is torch.nn.modules.linear.NonDynamicallyQuantizableLinear
    assert type(block.hooked) is torch.nn.Linear and type(block.in_float64) is torch.nn.Linear
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_packed_layer_shows_the_weight_shape_dtype_and_device_a_model_reads():
    layer = torch.nn.Sequential(torch.nn.Linear(12, 20))
    prepack_linears(layer, min_weights=0)
    packed = layer[0]
    assert (packed.weight.shape, packed.weight.dtype, packed.weight.device.type) == ((20, 12), torch.float32, "cpu")
    assert (packed.in_features, packed.out_features) == (12, 20)
    # The packed weight is a buffer (counted by memory reports) and is not saved.
    assert sum(t.numel() for t in layer.buffers()) == 20 * 12 + 20
    assert layer.state_dict() == {}


def test_nothing_is_swapped_where_this_torch_cannot_pack(monkeypatch, caplog):
    monkeypatch.setitem(prepack._PROBE, "why", "this PyTorch build has no oneDNN")
    layer = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with caplog.at_level(logging.INFO, logger="modelplex.prepack"):
        assert prepack_linears(layer, min_weights=0) == 0
    assert type(layer[0]) is torch.nn.Linear
    assert "no oneDNN" in caplog.text


def test_small_layers_stay_plain():
    layer = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 1024))
    assert prepack_linears(layer) == 1  # 65,536 weights stay, 262,144 are packed
    assert type(layer[0]) is torch.nn.Linear and type(layer[1]).__name__ == "_PackedLinear"


@pytest.fixture(scope="module")
def wide_gpt2(tmp_path_factory):
    """A GPT-2 512 wide: its layers are over MIN_WEIGHTS (the tests' 32-wide one has none)."""
    from text_models import save_gpt2

    return save_gpt2(tmp_path_factory.mktemp("wide") / "gpt2", n_embd=512)


@pytest.mark.parametrize("prepacked", [True, False])
def test_a_text_model_packs_on_the_cpu_unless_told_not_to(wide_gpt2, prepacked):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelplex.testing import running_server
    from modelplex_client import Client

    model = {"spec": "gpt2", "name": "m", "weights": str(wide_gpt2), "settings": {"cpu_prepack": prepacked}}
    with running_server({"models": [model]}) as server, Client(server.address, timeout=60) as client:
        generator = server.server.registry.describe("m").instances[0].model
        kinds = [type(m).__name__ for m in generator.model.modules()]
        # 2 layers x (c_attn, attn c_proj, c_fc, mlp c_proj), or none; the LM head (a vocabulary
        # of a few hundred words) is under MIN_WEIGHTS.
        assert kinds.count("_PackedLinear") == (8 if prepacked else 0)
        assert kinds.count("Linear") == 1
        assert kinds.count("Conv1D") == (0 if prepacked else 8)
        streams = [client.complete(p, model="m", max_new_tokens=12) for p in ("hello world", "a b c")]
    reference = AutoModelForCausalLM.from_pretrained(wide_gpt2).eval()
    tokenizer = AutoTokenizer.from_pretrained(wide_gpt2)
    for prompt, out in zip(("hello world", "a b c"), streams, strict=True):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        want = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
        assert list(out.token_ids) == want[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_lstm_cell_equals_the_plain_one(bias):
    torch.manual_seed(1)
    holder = torch.nn.Sequential(torch.nn.LSTMCell(24, 32, bias=bias)).eval()
    cell = holder[0]
    x, h, c = torch.randn(5, 24), torch.randn(5, 32), torch.randn(5, 32)
    with torch.inference_mode():
        want = [cell(x, (h, c)), cell(x), cell(x[0], (h[0], c[0])), cell(x[0])]
        assert prepack_linears(holder, min_weights=0) == 1
        packed = holder[0]
        got = [packed(x, (h, c)), packed(x), packed(x[0], (h[0], c[0])), packed(x[0])]
    assert type(packed).__name__ == "_PackedLSTMCell"
    for (gh, gc), (wh, wc) in zip(got, want, strict=True):
        assert gh.shape == wh.shape and gc.shape == wc.shape
        torch.testing.assert_close(gh, wh, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gc, wc, rtol=1e-5, atol=1e-5)


def test_unpacking_restores_every_layer_and_weight_exactly():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(24, 32), Conv1D(16, 32), torch.nn.LSTMCell(16, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert prepack_linears(model, min_weights=0) == 3
    assert model.state_dict() == {}  # the dense weights are gone
    assert prepack.unpack_linears(model) == 3
    assert [type(m) for m in model] == [torch.nn.Linear, Conv1D, torch.nn.LSTMCell]
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_layers_are_packed_one_at_a_time_each_dense_weight_released_before_the_next(monkeypatch):
    """The peak is the model plus one layer, not two models."""
    import gc
    import weakref

    model = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(5)))
    refs = [weakref.ref(layer.weight) for layer in model]
    alive_at_each_pack = []
    real = prepack.PackedLinear

    def counting(layer, rows):
        gc.collect()
        alive_at_each_pack.append(sum(r() is not None for r in refs))
        return real(layer, rows)

    monkeypatch.setattr(prepack, "PackedLinear", counting)
    assert prepack_linears(model, min_weights=0) == 5
    assert alive_at_each_pack == [5, 4, 3, 2, 1]


def test_a_layer_shared_by_two_parents_is_packed_once():
    shared = torch.nn.Linear(8, 8)
    model = torch.nn.ModuleDict({"a": torch.nn.Sequential(shared), "b": torch.nn.Sequential(shared)})
    assert prepack_linears(model, min_weights=0) == 1
    assert model["a"][0] is model["b"][0]


def test_fused_owners_replaced_forwards_and_quantized_weights_are_left_alone():
    torch.manual_seed(3)
    encoder = torch.nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True).eval()
    hooked = torch.nn.Linear(16, 16)
    hooked.forward = lambda x, f=hooked.forward: f(x) + 1  # what accelerate's add_hook_to_module does

    class Quantized(torch.Tensor):  # a tensor subclass, as torchao's quantized weights are
        pass

    quantized = torch.nn.Linear(16, 16)
    quantized.weight = torch.nn.Parameter(quantized.weight.detach().as_subclass(Quantized))
    model = torch.nn.ModuleList([encoder, hooked, quantized])
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        want = encoder(x)
        assert prepack_linears(model, min_weights=0) == 0
        torch.testing.assert_close(encoder(x), want)  # its fast path would fail on packed weights


class ReadsItsWeight(torch.nn.Module):
    """A model whose code slices a layer's weight (BLOOM does, with slow_but_exact)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 8)
        self.second = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return torch.nn.functional.linear(h[:, :4], self.second.weight[:, :4]) + self.second.bias


def test_a_check_that_fails_once_packed_undoes_the_packing(caplog):
    torch.manual_seed(4)
    model = ReadsItsWeight()
    x = torch.randn(3, 8)
    with torch.inference_mode():
        want = model(x)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="modelplex.prepack"):
        assert prepack_linears(model, min_weights=0, check=lambda: model(x)) == 0
    assert "2 layers packed for oneDNN undone" in caplog.text and "fails" in caplog.text
    assert type(model.first) is torch.nn.Linear and type(model.second) is torch.nn.Linear
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with torch.inference_mode():
        assert torch.equal(model(x), want)
    # Without a check the packing stands, and the model fails when it runs.
    assert prepack_linears(model, min_weights=0) == 2
    with pytest.raises((RuntimeError, NotImplementedError)), torch.inference_mode():
        model(x)


def test_a_check_that_passes_keeps_the_packing():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(3, 8)
    assert prepack_linears(model, min_weights=0, check=lambda: model(x)) == 2
    assert type(model[0]).__name__ == "_PackedLinear"
