"""WaveGlow (Prenger et al., 2018), written for this plugin, and its checkpoints.

The architecture follows NVIDIA DeepLearningExamples (PyTorch/SpeechSynthesis/Tacotron2):
an upsampling transposed convolution, then ``n_flows`` steps of an invertible 1x1
convolution and an affine coupling layer whose WaveNet-like ``WN`` has weight-normed
convolutions, with ``n_early_size`` channels output early every ``n_early_every`` flows.
Its parameter names are that repository's, so its checkpoints load as they are: a dict
with ``state_dict`` (``module.``-prefixed when trained with DDP; ``weight_g``/``weight_v``
pairs for weight-normed layers) and ``config`` (the constructor's arguments). At full size
(``n_channels`` 512) it has about 268 M parameters.

Checkpoints are read with ``torch.load(weights_only=True)``. The original NVIDIA/waveglow
repository saved the whole pickled module (``{"model": WaveGlow(...)}``); unpickling that
would run code from the file, so it is refused with the one-time conversion to do instead.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modelplex import ModelLoadError, WeightsNotFoundError

__all__ = ["FULL_CONFIG", "WaveGlow", "load_waveglow"]

FULL_CONFIG: dict[str, Any] = {
    "n_mel_channels": 80,
    "n_flows": 12,
    "n_group": 8,
    "n_early_every": 4,
    "n_early_size": 2,
    "WN_config": {"n_layers": 8, "kernel_size": 3, "n_channels": 512},
}
"""DeepLearningExamples' published WaveGlow (LJSpeech, 268 M parameters)."""


class WeightNormConv1d(nn.Module):
    """A Conv1d whose weight is ``weight_g * weight_v / ||weight_v||`` (norm over all but the
    output dimension): ``torch.nn.utils.weight_norm``'s parameters, under its names."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, dilation: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.randn(c_out, c_in, kernel_size) * (1.0 / (c_in * kernel_size) ** 0.5))
        self.weight_g = nn.Parameter(self.weight_v.detach().flatten(1).norm(dim=1).reshape(c_out, 1, 1).clone())
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.dilation, self.padding = dilation, padding
        self._weight: torch.Tensor | None = None

    def weight(self) -> torch.Tensor:
        if self._weight is not None:
            return self._weight
        norm = self.weight_v.flatten(1).norm(dim=1).reshape(-1, 1, 1)
        return self.weight_g * self.weight_v / norm

    def freeze(self) -> None:
        """Compute the weight once for inference (the parameters no longer change)."""
        with torch.no_grad():
            self._weight = None
            self._weight = self.weight().detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, dilation=self.dilation, padding=self.padding)


class Invertible1x1Conv(nn.Module):
    """A channel-mixing 1x1 convolution; inference runs its inverse."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1, bias=False)
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        self.conv.weight.data = w[..., None]
        self._inverse: torch.Tensor | None = None

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        if self._inverse is None or self._inverse.device != z.device:
            self._inverse = self.conv.weight.squeeze(-1).float().inverse()[..., None].to(z.dtype)
        return F.conv1d(z, self._inverse)


class WN(nn.Module):
    """The WaveNet-like network of one affine coupling layer (non-causal, dilation 2**i)."""

    def __init__(self, n_in: int, n_mel: int, n_layers: int, n_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.n_layers, self.n_channels = n_layers, n_channels
        self.start = WeightNormConv1d(n_in, n_channels)
        self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
        self.in_layers = nn.ModuleList()
        self.cond_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = 2**i
            self.in_layers.append(
                WeightNormConv1d(n_channels, 2 * n_channels, kernel_size, d, (kernel_size * d - d) // 2)
            )
            self.cond_layers.append(WeightNormConv1d(n_mel, 2 * n_channels))
            out = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(WeightNormConv1d(n_channels, out))

    def forward(self, audio: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
        audio = self.start(audio)
        output = torch.zeros_like(audio)
        c = self.n_channels
        for i in range(self.n_layers):
            acts = self.in_layers[i](audio) + self.cond_layers[i](spect)
            acts = torch.tanh(acts[:, :c]) * torch.sigmoid(acts[:, c:])
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                audio = audio + res_skip[:, :c]
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return self.end(output)


class WaveGlow(nn.Module):
    """WaveGlow with DeepLearningExamples' constructor and parameter names; :meth:`infer`
    draws its noise from a given generator."""

    def __init__(
        self,
        n_mel_channels: int,
        n_flows: int,
        n_group: int,
        n_early_every: int,
        n_early_size: int,
        WN_config: Mapping[str, int],  # noqa: N803 - the checkpoint's config key
    ) -> None:
        super().__init__()
        if n_group % 2:
            raise ValueError(f"n_group must be even, got {n_group}")
        self.n_mel_channels = n_mel_channels
        self.upsample = nn.ConvTranspose1d(n_mel_channels, n_mel_channels, 1024, stride=256)
        self.n_flows, self.n_group = n_flows, n_group
        self.n_early_every, self.n_early_size = n_early_every, n_early_size
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        n_half, remaining = n_group // 2, n_group
        for k in range(n_flows):
            if k % n_early_every == 0 and k > 0:
                n_half -= n_early_size // 2
                remaining -= n_early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(WN(n_half, n_mel_channels * n_group, **WN_config))
        self.n_remaining_channels = remaining

    def freeze(self) -> None:
        """Fold the weight norms for inference."""
        for module in self.modules():
            if isinstance(module, WeightNormConv1d):
                module.freeze()

    @torch.inference_mode()
    def infer(self, spect: torch.Tensor, sigma: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio ``(batch, frames * 256)`` for mel ``(batch, n_mel_channels, frames)``."""
        spect = self.upsample(spect)
        cutoff = self.upsample.kernel_size[0] - self.upsample.stride[0]
        spect = spect[:, :, :-cutoff]
        spect = spect.unfold(2, self.n_group, self.n_group).permute(0, 2, 1, 3)
        spect = spect.contiguous().view(spect.size(0), spect.size(1), -1).permute(0, 2, 1)
        b, steps = spect.size(0), spect.size(2)

        def noise(channels: int) -> torch.Tensor:
            return sigma * torch.randn(b, channels, steps, generator=generator, device=spect.device, dtype=spect.dtype)

        audio = noise(self.n_remaining_channels)
        for k in reversed(range(self.n_flows)):
            n_half = audio.size(1) // 2
            a0, a1 = audio[:, :n_half], audio[:, n_half:]
            out = self.WN[k](a0, spect)
            s, bias = out[:, n_half:], out[:, :n_half]
            conv: Invertible1x1Conv = self.convinv[k]  # type: ignore[assignment]
            audio = conv.inverse(torch.cat([a0, (a1 - bias) / torch.exp(s)], 1))
            if k % self.n_early_every == 0 and k > 0:
                audio = torch.cat([noise(self.n_early_size), audio], 1)
        return audio.permute(0, 2, 1).contiguous().view(b, -1)


def _split_cond_layer(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """NVIDIA/waveglow's later WN had one ``cond_layer`` for all layers; split it into the
    per-layer ``cond_layers`` (weight norm is per output channel, so this is exact)."""
    out = {}
    for key, value in sd.items():
        head, sep, name = key.partition(".cond_layer.")
        if not sep:
            out[key] = value
            continue
        for i, part in enumerate(value.chunk(n_layers, dim=0)):
            out[f"{head}.cond_layers.{i}.{name}"] = part
    return out


def _weight_normed(sd: dict[str, torch.Tensor], model: WaveGlow) -> dict[str, torch.Tensor]:
    """A checkpoint whose weight norms were removed (plain ``weight``) as g/v pairs."""
    out = dict(sd)
    for name, module in model.named_modules():
        if isinstance(module, WeightNormConv1d) and f"{name}.weight" in out and f"{name}.weight_v" not in out:
            w = out.pop(f"{name}.weight")
            out[f"{name}.weight_v"] = w
            out[f"{name}.weight_g"] = w.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    return out


def _read(path: Path) -> Any:
    if not path.is_file():
        raise WeightsNotFoundError(f"WaveGlow checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"{path} holds a pickled Python object, not tensors ({str(e).splitlines()[0][:200]}). "
            "A checkpoint of the original NVIDIA/waveglow repository pickles the whole module, "
            "which modelplex does not unpickle (that would run code from the file). Convert it once, "
            "where that repository's code is importable and you trust the file: "
            "python -c \"import torch; m = torch.load('IN.pt', weights_only=False)['model']; "
            "torch.save({'state_dict': m.state_dict(), 'config': dict(n_mel_channels=80, n_flows=m.n_flows, "
            "n_group=m.n_group, n_early_every=m.n_early_every, n_early_size=m.n_early_size, "
            "WN_config=dict(n_layers=m.WN[0].n_layers, n_channels=m.WN[0].n_channels, kernel_size=3))}, "
            "'OUT.pt')\" and serve OUT.pt"
        ) from None


def load_waveglow(path: Path) -> WaveGlow:
    """A WaveGlow from a DeepLearningExamples checkpoint; ModelLoadError names the keys that
    do not fit its config."""
    ckpt = _read(path)
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "config" not in ckpt:
        keys = sorted(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ModelLoadError(
            f"{path} is not a DeepLearningExamples WaveGlow checkpoint (a dict with 'state_dict' and 'config'); "
            f"it has {keys}"
        )
    config = dict(ckpt["config"])
    try:
        model = WaveGlow(**config)
    except TypeError as e:
        raise ModelLoadError(f"{path}: its config {config} does not describe a WaveGlow: {e}") from None
    sd = {k.removeprefix("module."): v.float() for k, v in ckpt["state_dict"].items()}
    sd = _weight_normed(_split_cond_layer(sd, int(config["WN_config"]["n_layers"])), model)
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or extra:
        raise ModelLoadError(
            f"{path} does not match the WaveGlow of its config: "
            f"missing keys {_names(missing)}; unexpected keys {_names(extra)}"
        )
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise ModelLoadError(f"{path} does not match the WaveGlow of its config: {e}") from None
    model.freeze()
    return model.eval()


def _names(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', and {len(keys) - limit} more' if len(keys) > limit else ''}]"
