"""Linear layers of a float32 model on a CPU, run through oneDNN with their weights reordered once.

``torch.nn.functional.linear`` on a CPU hands each call to a GEMM that re-reads (and, for a
few rows, repacks) the whole weight matrix in its own blocked layout every time. A decode
step of a language model is a few rows times every weight of the model, so that cost is most
of the step: for a distilgpt2-shaped model on 2 cores, 61 % of a 16-row step is its 25
matrix products. oneDNN can reorder a weight into its blocked layout once, at load, and
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

A layer the swap cannot take is left as it is: one with forward hooks, one not in float32 or
not on the CPU, and a small one (:data:`MIN_WEIGHTS`), where a oneDNN call's overhead is more
than it saves. A PyTorch build without oneDNN, or one whose packed product does not equal the
plain one on a probe, leaves the whole module alone.

Importing this module imports no torch.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["MIN_WEIGHTS", "PackedLSTMCell", "PackedLinear", "prepack_linears"]

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
        a non-persistent buffer: it is counted by ``buffers()`` and not saved)."""

        packed: torch.Tensor
        bias: torch.Tensor | None

        def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> None:
            super().__init__()
            self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)
            self.register_buffer("packed", packed, persistent=False)
            self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)

        @property
        def weight(self) -> torch.Tensor:
            """The packed weight: its shape (out, in), dtype and device are the layer's (models
            read them: T5 casts to its output layer's dtype); its data is oneDNN's alone."""
            return self.packed

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"

    class _PackedLSTMCell(torch.nn.Module):
        """``torch.nn.LSTMCell`` with its two products made one, ``[x, h] [W_ih, W_hh]^T``,
        over a weight held in oneDNN's blocked layout; the gates as PyTorch defines them
        (input, forget, cell, output)."""

        packed: torch.Tensor
        bias: torch.Tensor | None

        def __init__(self, cell: torch.nn.LSTMCell, rows: int) -> None:
            super().__init__()
            self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
            with torch.no_grad():
                weight = torch.cat((cell.weight_ih, cell.weight_hh), 1).contiguous()
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
                bias = (cell.bias_ih + cell.bias_hh).detach() if cell.bias else None
            self.register_buffer("packed", packed, persistent=False)
            self.register_buffer("bias", bias, persistent=False)

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

        def extra_repr(self) -> str:
            return f"{self.input_size}, {self.hidden_size}, packed for oneDNN"

    return _PackedLinear, _PackedLSTMCell


_CLASS: list[type] = []


def PackedLinear(weight: Any, bias: Any, rows: int = 16) -> Any:  # noqa: N802 - a class, built lazily
    """A module computing ``x @ weight.T + bias`` from a copy of ``weight`` reordered for
    oneDNN; ``rows`` is the number of rows the reorder is tuned for (any number works)."""
    if not _CLASS:
        _CLASS.extend(_packed_classes())
    return _CLASS[0](weight, bias, rows)


def PackedLSTMCell(cell: Any, rows: int = 16) -> Any:  # noqa: N802 - a class, built lazily
    """A module computing what ``cell`` (a ``torch.nn.LSTMCell``) does, its two products one
    product by a weight reordered for oneDNN."""
    if not _CLASS:
        _CLASS.extend(_packed_classes())
    return _CLASS[1](cell, rows)


def _is_conv1d(module: Any) -> bool:
    """transformers' ``Conv1D`` (GPT-2, GPT-J's heads...): a linear layer whose weight is
    stored (in, out); recognised by its shape, so this module needs no transformers."""
    if type(module).__name__ != "Conv1D":
        return False
    shape = tuple(getattr(getattr(module, "weight", None), "shape", ()))
    return len(shape) == 2 and shape[1] == getattr(module, "nf", -1)


MIN_WEIGHTS = 1 << 18
"""Layers with fewer weights (in x out) than this stay plain: a oneDNN call costs ~15 us more
than PyTorch's own product, which is more than packing saves below about 512 x 512 (measured
on 2 cores: 24 against 28 us at 1 row, 83 against 61 us at 16 rows for 512 x 512; 7 against
22 us and 25 against 31 us for 256 x 256)."""


def prepack_linears(module: Any, *, rows: int = 16, min_weights: int | None = None) -> int:
    """Swap the float32 CPU linear layers of ``module`` that have at least ``min_weights``
    weights (default :data:`MIN_WEIGHTS`) for :class:`PackedLinear` ones, in place, for
    inference; returns how many were
    swapped (0 where this PyTorch cannot, with the reason logged at INFO). ``rows``: the rows
    per product the reorder is tuned for (a decode step's batch size); products of any other
    number of rows are right too."""
    import torch

    why = _unavailable()
    if why is not None:
        log.info("linear layers left unpacked: %s", why)
        return 0
    least = MIN_WEIGHTS if min_weights is None else min_weights
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            # Exactly nn.Linear: a subclass may be read by its owner (nn.MultiheadAttention
            # passes its out_proj's weight to a functional call) or quantized.
            if type(child) is torch.nn.Linear:
                weight, bias = child.weight, child.bias
            elif _is_conv1d(child):
                weight, bias = child.weight.t(), child.bias
            elif type(child) is torch.nn.LSTMCell:
                weight, bias = child.weight_ih, None  # (4 hidden, input): its size and dtype
            else:
                continue
            if (
                weight.numel() < least
                or weight.dtype != torch.float32
                or weight.device.type != "cpu"
                or child._forward_hooks
                or child._forward_pre_hooks
            ):
                continue
            if type(child) is torch.nn.LSTMCell:
                setattr(parent, name, PackedLSTMCell(child, rows))
            else:
                setattr(parent, name, PackedLinear(weight, bias, rows))
            swapped += 1
    return swapped
