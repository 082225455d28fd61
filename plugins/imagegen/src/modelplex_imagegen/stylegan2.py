"""StyleGAN2's generator in pure PyTorch, in the layout of rosinality's ``stylegan2-pytorch``.

Its ``.pt`` checkpoints (``{"g_ema": state_dict, "latent_avg": tensor}``, as written by that
repository's ``convert_weight.py`` from NVIDIA's pickles, or by its ``train.py`` with more
keys) load here under the same names: ``style.N`` (the mapping network), ``input.input``,
``conv1``, ``to_rgb1``, ``convs.N``, ``to_rgbs.N``, ``noises.noise_N``. The CUDA kernels of
that repository (``fused_leaky_relu``, ``upfirdn2d``) are replaced by their reference
PyTorch forms, which it also uses on the CPU. Only what inference needs is here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StyleGAN2Generator", "channels_for", "infer_architecture"]

_BLUR = (1, 3, 3, 1)


def channels_for(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution, as rosinality's ``Generator`` sets them (capped at ``channel_max``)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier}
    base |= {256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: min(c, channel_max) for res, c in base.items()}


def _kernel(k: Sequence[int]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Up-sample by zeros, pad, FIR-filter, down-sample (the reference ``upfirdn2d_native``)."""
    pad0, pad1 = pad
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x.reshape(n * c, h, 1, w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1]).reshape(n * c, h * up, w * up, 1)
    out = F.pad(out, [0, 0, max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)])
    out = out[:, max(-pad0, 0) : out.shape[1] - max(-pad1, 0), max(-pad0, 0) : out.shape[2] - max(-pad1, 0), :]
    out = out.permute(0, 3, 1, 2).reshape(-1, 1, h * up + pad0 + pad1, w * up + pad0 + pad1)
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, kh, kw))
    out = out.reshape(n * c, 1, h * up + pad0 + pad1 - kh + 1, w * up + pad0 + pad1 - kw + 1)
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope=0.2) * math.sqrt(2)


class Blur(nn.Module):
    kernel: torch.Tensor

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", _kernel(_BLUR) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    kernel: torch.Tensor

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", _kernel(_BLUR) * factor**2)
        p = len(_BLUR) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0, lr_mul: float = 1, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, demodulate: bool = True, upsample: bool = False
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (len(_BLUR) - 2) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # The fused form of the reference: one grouped convolution, a weight per sample.
        n, _, h, w = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * self.modulation(style).view(n, 1, self.in_ch, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, self.out_ch, 1, 1, 1)
        x = x.reshape(1, n * self.in_ch, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            return self.blur(out.view(n, self.out_ch, out.shape[2], out.shape[3]))
        out = F.conv2d(x, weight.reshape(n * self.out_ch, self.in_ch, k, k), padding=self.padding, groups=n)
        return out.view(n, self.out_ch, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class StyleGAN2Generator(nn.Module):
    """z (N, style_dim) -> images (N, 3, size, size), about [-1, 1]."""

    def __init__(
        self, size: int, style_dim: int = 512, n_mlp: int = 8, channels: Mapping[int, int] | None = None
    ) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.log_size = int(math.log2(size))
        if 2**self.log_size != size or size < 4:
            raise ValueError(f"size must be a power of two of at least 4, got {size}")
        ch = dict(channels or channels_for())
        self.style = nn.Sequential(
            PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=0.01, act=True) for _ in range(n_mlp))
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.n_latent = self.log_size * 2 - 2

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """The shape of each layer's noise for one image, in the order :meth:`synthesis` takes them."""
        return [tuple(getattr(self.noises, f"noise_{i}").shape) for i in range(self.num_layers)]  # type: ignore[misc]

    def const_noise(self) -> list[torch.Tensor]:
        """The fixed noise stored in the checkpoint (``randomize_noise=False`` in the reference)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The mean mapped latent of ``n`` normal samples: ``latent_avg`` when a checkpoint has none."""
        z = torch.randn(n, self.style_dim, generator=generator).to(self.input.input)
        return self.style(z).mean(0)

    def synthesis(self, w: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mapped latents ``w`` (N, style_dim), already truncated, and per-layer noise
        (each (N or 1, 1, H, W)) -> images."""
        latent = w.unsqueeze(1).expand(-1, self.n_latent, -1)
        out = self.input.input.expand(w.shape[0], -1, -1, -1)
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, n1, n2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs, strict=True
        ):
            out = conv1(out, latent[:, i], n1)
            out = conv2(out, latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


def infer_architecture(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int, dict[int, int]]:
    """(size, style_dim, n_mlp, channels per resolution) of a ``g_ema`` state_dict, read off its shapes."""
    style_dim = int(state["style.1.weight"].shape[1])
    n_mlp = sum(1 for k in state if k.startswith("style.") and k.endswith(".weight"))
    n_convs = sum(1 for k in state if k.startswith("convs.") and k.endswith(".conv.weight"))
    size = 2 ** (2 + n_convs // 2)
    channels = {4: int(state["conv1.conv.weight"].shape[1])}
    for i in range(n_convs // 2):
        channels[2 ** (3 + i)] = int(state[f"convs.{2 * i}.conv.weight"].shape[1])
    return size, style_dim, n_mlp, channels
