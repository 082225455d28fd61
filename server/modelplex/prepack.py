"""Linear layers of a float32 model on a CPU, run through oneDNN with their weights reordered once.

``torch.nn.functional.linear`` on a CPU hands each call to a GEMM that re-reads (and, for a
few rows, repacks) the whole weight matrix in its own blocked layout every time. A decode
step of a language model is a few rows times every weight of the model, so that cost is most
of the step: for a distilgpt2-shaped model on 2 cores, 83 % of a 16-row step is its 25
matrix products (43 % the LM head's alone). oneDNN can reorder a weight into its blocked layout once, at load, and
multiply by it from then on (``torch.ops.mkldnn._reorder_linear_weight`` and
``_linear_pointwise``, the pair PyTorch's own compiler uses when it freezes a CPU model).
Measured here (docs/benchmarks.md §4.2): a step 1.5x faster at 1 row and 2.3x at 16.

The arithmetic stays float32; only the order of the sums changes, as it does between a 1-row
and a 16-row product (the outputs differ in the last bits).

:func:`prepack_linears` swaps, for modules holding the reordered weight and no other copy:

* every ``torch.nn.Linear`` (exactly that class: a subclass such as
  ``nn.MultiheadAttention``'s projection is read by its owner) and every ``Conv1D`` (the
  transposed linear of GPT-2 style models in transformers) for a :class:`PackedLinear`, whose
  ``weight`` is the packed tensor: its shape, dtype and device are the layer's (what models
  read of a layer's weight besides multiplying by it), its data only oneDNN reads;
* every ``torch.nn.LSTMCell`` (a recurrent decoder's: Tacotron 2's) for a
  :class:`PackedLSTMCell`, its two products made one.

oneDNN builds its kernel for each new number of rows once and caches it: a prompt length seen
for the first time costs a few milliseconds more (a distilgpt2-sized prefill: 33.7 against
30.0 ms; plain products took 60 ms).

A layer the swap cannot take is left as it is: one with forward hooks (or a replaced
``forward``, as accelerate's hooks do), a subclass, a weight that is not a plain float32 CPU
tensor (a quantized tensor subclass), the layers inside ``nn.TransformerEncoderLayer`` and
``nn.MultiheadAttention`` (their owners hand the weights to fused kernels), and a small one
(:data:`MIN_WEIGHTS`), where a oneDNN call's overhead is more than it saves. A module whose
own code reads a layer's weight data fails on a packed layer; give :func:`prepack_linears` a
``check`` (a small forward) and it undoes the swap instead (:func:`unpack_linears`). A
PyTorch build without oneDNN, or one whose packed product does not equal the plain one on a
probe, leaves the whole module alone.

Importing this module imports no torch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MIN_WEIGHTS", "PackedLSTMCell", "PackedLinear", "prepack_linears", "unpack_linears"]

log = logging.getLogger(__name__)

_PROBE: dict[str, str | None] = {}
_PROBE_LOCK = threading.Lock()


def _unavailable() -> str | None:
    """Why this PyTorch cannot run packed linears (None: it can), probed once per process."""
    with _PROBE_LOCK:
        if "why" not in _PROBE:
            _PROBE["why"] = _probe()
        return _PROBE["why"]


def _probe() -> str | None:
    import torch

    if not torch.backends.mkldnn.is_available():
        return "this PyTorch build has no oneDNN"
    try:
        g = torch.Generator().manual_seed(0)
        weight, bias = torch.randn(48, 40, generator=g), torch.randn(48, generator=g)
        x = torch.randn(3, 5, 40, generator=g)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 4)
        got = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    except (RuntimeError, AttributeError, TypeError) as e:
        return f"oneDNN's packed linear failed here: {e}"
    want = torch.nn.functional.linear(x, weight, bias)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        return "oneDNN's packed linear does not equal torch.nn.functional.linear here"
    return None


def _packed_classes() -> tuple[type, type]:
    import torch

    class _PackedLinear(torch.nn.Module):
        """``y = x W^T + b`` with ``W`` held in oneDNN's blocked layout (an ``_mkldnn`` tensor,
        a non-persistent buffer: it is counted by ``buffers()`` and not saved). It keeps the
        layer it replaced, without its weight, for :meth:`unpacked`."""

        packed: torch.Tensor
        bias: torch.Tensor | None

        def __init__(self, layer: Any, rows: int) -> None:
            super().__init__()
            conv1d = type(layer) is not torch.nn.Linear
            param = layer.weight
            weight = param.t() if conv1d else param
            self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)
            bias = None if layer.bias is None else layer.bias.detach()
            self.register_buffer("packed", packed, persistent=False)
            self.register_buffer("bias", bias, persistent=False)
            self._layer, self._conv1d, self._grad = (layer,), conv1d, param.requires_grad
            layer.weight = None  # the dense weight goes with the last reference to it
            del param, weight

        @property
        def weight(self) -> torch.Tensor:
            """The packed weight: its shape (out, in), dtype and device are the layer's (models
            read them: T5 casts to its output layer's dtype); its data is oneDNN's alone."""
            return self.packed

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

        def unpacked(self) -> Any:
            """The layer this replaced, its weight restored exactly from the packed copy."""
            (layer,) = self._layer
            dense = self.packed.to_dense()
            dense = dense.t().contiguous() if self._conv1d else dense
            layer.weight = torch.nn.Parameter(dense, requires_grad=self._grad)
            return layer

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"

    class _PackedLSTMCell(torch.nn.Module):
        """``torch.nn.LSTMCell`` with its two products made one, ``[x, h] [W_ih, W_hh]^T``,
        over a weight held in oneDNN's blocked layout; the gates as PyTorch defines them
        (input, forget, cell, output). It keeps the cell it replaced, without its weights."""

        packed: torch.Tensor
        bias: torch.Tensor | None

        def __init__(self, cell: Any, rows: int) -> None:
            super().__init__()
            self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
            with torch.no_grad():
                weight = torch.cat((cell.weight_ih, cell.weight_hh), 1).contiguous()
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
                bias = (cell.bias_ih + cell.bias_hh).detach() if cell.bias else None
            del weight
            self.register_buffer("packed", packed, persistent=False)
            self.register_buffer("bias", bias, persistent=False)
            self._layer, self._grad = (cell,), cell.weight_ih.requires_grad
            cell.weight_ih = cell.weight_hh = None

        def forward(
            self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            single = x.dim() == 1
            if single:
                x = x.unsqueeze(0)
                hx = None if hx is None else (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
            if hx is None:
                zeros = x.new_zeros(x.shape[0], self.hidden_size)
                hx = (zeros, zeros)
            h, c = hx
            gates = torch.ops.mkldnn._linear_pointwise(torch.cat((x, h), -1), self.packed, self.bias, "none", [], "")
            i, f, g, o = gates.chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return (h[0], c[0]) if single else (h, c)

        def unpacked(self) -> Any:
            """The cell this replaced, its two weights restored exactly from the packed copy."""
            (cell,) = self._layer
            dense = self.packed.to_dense()
            cell.weight_ih = torch.nn.Parameter(dense[:, : self.input_size].contiguous(), requires_grad=self._grad)
            cell.weight_hh = torch.nn.Parameter(dense[:, self.input_size :].contiguous(), requires_grad=self._grad)
            return cell

        def extra_repr(self) -> str:
            return f"{self.input_size}, {self.hidden_size}, packed for oneDNN"

    return _PackedLinear, _PackedLSTMCell


_CLASS: list[type] = []


def _classes() -> list[type]:
    """The packed classes, made once per process (instances load on threads of their own)."""
    with _PROBE_LOCK:
        if not _CLASS:
            _CLASS.extend(_packed_classes())
        return _CLASS


def PackedLinear(layer: Any, rows: int = 16) -> Any:  # noqa: N802 - a class, built lazily
    """A module computing what ``layer`` (a ``torch.nn.Linear`` or transformers ``Conv1D``)
    does, by a copy of its weight reordered for oneDNN; ``rows`` is the number of rows the
    reorder is tuned for (any number works). It takes the layer's weight away (``unpacked()``
    gives it back)."""
    return _classes()[0](layer, rows)


def PackedLSTMCell(cell: Any, rows: int = 16) -> Any:  # noqa: N802 - a class, built lazily
    """A module computing what ``cell`` (a ``torch.nn.LSTMCell``) does, its two products one
    product by a weight reordered for oneDNN. It takes the cell's weights away (``unpacked()``
    gives them back)."""
    return _classes()[1](cell, rows)


def _is_conv1d(module: Any) -> bool:
    """transformers' ``Conv1D`` (GPT-2, GPT-J's heads...): a linear layer whose weight is
    stored (in, out); recognised by its shape, so this module needs no transformers."""
    if type(module).__name__ != "Conv1D":
        return False
    shape = tuple(getattr(getattr(module, "weight", None), "shape", ()))
    return len(shape) == 2 and shape[1] == getattr(module, "nf", -1)


def _packable(child: Any, least: int) -> bool:
    """A plain float32 CPU layer of at least ``least`` weights, called only through its forward."""
    import torch

    if type(child) is torch.nn.LSTMCell:
        params = [child.weight_ih, child.weight_hh]
    elif type(child) is torch.nn.Linear or _is_conv1d(child):
        params = [child.weight]
    else:
        return False
    return (
        # A tensor subclass (a quantized weight) or another layout is not a plain weight.
        all(type(p) is torch.nn.Parameter and p.layout == torch.strided for p in params)
        and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
        and params[0].numel() >= least
        # Hooks, and accelerate's, which replaces the instance's forward, see the layer's calls.
        and not (child._forward_hooks or child._forward_pre_hooks)
        and "forward" not in child.__dict__
        and not hasattr(child, "_hf_hook")
    )


MIN_WEIGHTS = 1 << 18
"""Layers with fewer weights (in x out) than this stay plain: a oneDNN call costs ~15 us more
than PyTorch's own product, which is more than packing saves below about 512 x 512 (measured
on 2 cores: 24 against 28 us at 1 row, 83 against 61 us at 16 rows for 512 x 512; 7 against
22 us and 25 against 31 us for 256 x 256)."""


def prepack_linears(
    module: Any, *, rows: int = 16, min_weights: int | None = None, check: Callable[[], Any] | None = None
) -> int:
    """Swap the float32 CPU linear layers and LSTM cells of ``module`` that have at least
    ``min_weights`` weights (default :data:`MIN_WEIGHTS`) for packed ones, in place, for
    inference; returns how many were swapped (0 where this PyTorch cannot, with the reason
    logged at INFO). ``rows``: the rows per product the reorder is tuned for (a decode step's
    batch size); products of any other number of rows are right too.

    ``check``: a function that runs ``module`` on a small input and returns its output tensor.
    It is called before and after the swap; if the second call raises (the module's code reads
    a layer's weight data, which a packed layer does not have) or its output differs from the
    first's by more than 1e-3 of its largest value, every swap is undone (the weights restored
    exactly) with a warning saying why, and 0 is returned. Without it, such a module fails
    when it runs.

    Layers are packed one at a time, each dense weight released before the next is packed, so
    the peak is the model plus one layer. A layer registered under two parents is packed once.
    The children of ``torch.nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` are
    left alone: their owners pass the weights to fused kernels."""
    import torch

    why = _unavailable()
    if why is not None:
        log.info("linear layers left unpacked: %s", why)
        return 0
    least = MIN_WEIGHTS if min_weights is None else min_weights
    if not any(_packable(m, least) for m in module.modules()):
        return 0
    want: Any = None
    if check is not None:
        with torch.inference_mode():
            want = check()
    fused = (torch.nn.TransformerEncoderLayer, torch.nn.MultiheadAttention)
    slots = [(p, n) for p in module.modules() if not isinstance(p, fused) for n in list(p._modules)]
    done: dict[int, Any] = {}
    for parent, name in slots:
        child = parent._modules.get(name)
        if child is None:
            continue
        if id(child) in done:
            setattr(parent, name, done[id(child)])
            continue
        if not _packable(child, least):
            continue
        packed = PackedLSTMCell(child, rows) if type(child) is torch.nn.LSTMCell else PackedLinear(child, rows)
        setattr(parent, name, packed)
        done[id(child)] = packed
        del child, packed
    swapped = len(done)
    if check is None or not swapped:
        return swapped
    try:
        with torch.inference_mode():
            got = check()
        scale = float(want.abs().max()) if want.numel() else 0.0
        gap = float((got - want).abs().max()) if got.shape == want.shape and want.numel() else 0.0
        bad = None if got.shape == want.shape and gap <= 1e-3 * max(1.0, scale) else f"differs by {gap:.3g}"
    except Exception as e:  # the module's own code failed on a packed layer
        bad = f"fails ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    if bad is None:
        return swapped
    unpack_linears(module)
    log.warning("%d layers packed for oneDNN undone: the module's output with them %s; it runs unpacked", swapped, bad)
    return 0


def unpack_linears(module: Any) -> int:
    """Undo :func:`prepack_linears`: every packed layer of ``module`` becomes the layer it
    replaced again, with its weights restored exactly; returns how many."""
    classes = tuple(_CLASS)
    restored: dict[int, Any] = {}
    if not classes:
        return 0
    for parent, name in [(p, n) for p in module.modules() for n in list(p._modules)]:
        child = parent._modules.get(name)
        if isinstance(child, classes):
            if id(child) not in restored:
                restored[id(child)] = getattr(child, "unpacked")()  # noqa: B009 - classes made at run time
            setattr(parent, name, restored[id(child)])
    return len(restored)
