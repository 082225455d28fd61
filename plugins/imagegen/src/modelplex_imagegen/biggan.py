"""BigGAN-deep's generator in the layout of ``pytorch-pretrained-biggan``, written anew.

That package (``BigGAN.from_pretrained``) reads a folder of ``pytorch_model.bin`` (a
state_dict) and ``config.json``; this module builds the same modules under the same names
(``embeddings``, ``generator.gen_z``, ``generator.layers.N.bn_0.scale``, spectral-norm
``weight_orig``/``weight_u``/``weight_v``, ...), so those folders load here with a strict key
check, without the package (which imports scipy without declaring it and pulls boto3).
The forward pass follows it step for step, including its interpolation of the batch-norm
statistics between the precomputed truncations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BigGAN", "BigGANConfig", "prepare_random"]

_LAYERS_128 = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 4]]
_LAYERS_128 += [[False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]
_LAYERS_256 = _LAYERS_128[:5] + [[True, 8, 8], [False, 8, 8], [True, 8, 4]] + _LAYERS_128[6:]
_LAYERS_512 = _LAYERS_256 + [[False, 1, 1], [True, 1, 1]]
LAYERS = {128: _LAYERS_128, 256: _LAYERS_256, 512: _LAYERS_512}
"""The layer lists of the released 128, 256 and 512 models: (up-sample, in and out channel multipliers)."""


@dataclass
class BigGANConfig:
    """The fields of ``config.json`` (defaults: the 128x128 model)."""

    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: list[list[Any]] = field(default_factory=lambda: [list(x) for x in _LAYERS_128])
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    @classmethod
    def from_json_file(cls, path: Path) -> BigGANConfig:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def for_resolution(cls, resolution: int, **overrides: Any) -> BigGANConfig:
        return cls(output_dim=resolution, layers=[list(x) for x in LAYERS[resolution]], **overrides)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"


def _sn(module: nn.Module, eps: float) -> nn.Module:
    return nn.utils.spectral_norm(module, eps=eps)


class SelfAttn(nn.Module):
    def __init__(self, ch: int, eps: float) -> None:
        super().__init__()
        self.snconv1x1_theta = _sn(nn.Conv2d(ch, ch // 8, 1, bias=False), eps)
        self.snconv1x1_phi = _sn(nn.Conv2d(ch, ch // 8, 1, bias=False), eps)
        self.snconv1x1_g = _sn(nn.Conv2d(ch, ch // 2, 1, bias=False), eps)
        self.snconv1x1_o_conv = _sn(nn.Conv2d(ch // 2, ch, 1, bias=False), eps)
        self.maxpool = nn.MaxPool2d(2, stride=2, padding=0)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, ch, h, w = x.shape
        theta = self.snconv1x1_theta(x).view(-1, ch // 8, h * w)
        phi = self.maxpool(self.snconv1x1_phi(x)).view(-1, ch // 8, h * w // 4)
        attn = torch.bmm(theta.permute(0, 2, 1), phi).softmax(dim=-1)
        g = self.maxpool(self.snconv1x1_g(x)).view(-1, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(-1, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(attn_g)


class BigGANBatchNorm(nn.Module):
    """Batch norm with statistics precomputed for ``n_stats`` truncations in [0, 1]."""

    running_means: torch.Tensor
    running_vars: torch.Tensor

    def __init__(self, num_features: int, cond_dim: int | None, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.conditional = cond_dim is not None
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step_size = 1.0 / (n_stats - 1)
        if cond_dim is not None:
            self.scale = _sn(nn.Linear(cond_dim, num_features, bias=False), eps)
            self.offset = _sn(nn.Linear(cond_dim, num_features, bias=False), eps)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float, cond: torch.Tensor | None = None) -> torch.Tensor:
        coef, start = math.modf(truncation / self.step_size)
        i = int(start)
        means, vars_ = self.running_means, self.running_vars
        if coef != 0.0:  # the reference's weighting, kept as is: the weights were used with it
            mean = means[i] * coef + means[i + 1] * (1 - coef)
            var = vars_[i] * coef + vars_[i + 1] * (1 - coef)
        else:
            mean, var = means[i], vars_[i]
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)
        assert cond is not None
        weight = 1 + self.scale(cond)[:, :, None, None]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * weight + bias


class GenBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, cond_dim: int, up_sample: bool, n_stats: int, eps: float) -> None:
        super().__init__()
        self.up_sample = up_sample
        self.drop_channels = in_size != out_size
        mid = in_size // 4
        self.bn_0 = BigGANBatchNorm(in_size, cond_dim, n_stats, eps)
        self.conv_0 = _sn(nn.Conv2d(in_size, mid, 1), eps)
        self.bn_1 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_2 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_3 = BigGANBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = _sn(nn.Conv2d(mid, out_size, 1), eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        x0 = x
        x = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        x = F.relu(self.bn_1(x, truncation, cond))
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(F.relu(self.bn_2(x, truncation, cond)))
        x = self.conv_3(F.relu(self.bn_3(x, truncation, cond)))
        if self.drop_channels:
            x0 = x0[:, : x0.shape[1] // 2]
        if self.up_sample:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return x + x0


class Generator(nn.Module):
    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        ch, cond_dim = config.channel_width, config.z_dim * 2
        self.gen_z = _sn(nn.Linear(cond_dim, 4 * 4 * 16 * ch), config.eps)
        layers: list[nn.Module] = []
        for i, (up, c_in, c_out) in enumerate(config.layers):
            if i == config.attention_layer_position:
                layers.append(SelfAttn(ch * c_in, config.eps))
            layers.append(GenBlock(ch * c_in, ch * c_out, cond_dim, bool(up), config.n_stats, config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANBatchNorm(ch, None, config.n_stats, config.eps)
        self.conv_to_rgb = _sn(nn.Conv2d(ch, ch, 3, padding=1), config.eps)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        # (N, 4, 4, C) then NCHW: the TF weights' layout, as the reference does.
        z = self.gen_z(cond).view(-1, 4, 4, 16 * self.config.channel_width).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            z = layer(z, cond, truncation) if isinstance(layer, GenBlock) else layer(z)
        z = self.conv_to_rgb(F.relu(self.bn(z, truncation)))
        return torch.tanh(z[:, :3])


class BigGAN(nn.Module):
    """(z, one-hot class, truncation) -> images in [-1, 1]; ``pytorch_pretrained_biggan.BigGAN``'s layout."""

    def __init__(self, config: BigGANConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = Generator(config)

    def forward(self, z: torch.Tensor, class_label: torch.Tensor, truncation: float) -> torch.Tensor:
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        cond = torch.cat((z, self.embeddings(class_label)), dim=1)
        return self.generator(cond, truncation)  # type: ignore[no-any-return]


@torch.no_grad()
def prepare_random(model: BigGAN, seed: int = 0) -> None:
    """Make random weights usable: one power iteration of every spectral norm (whose u and v
    start unrelated to the weight, giving sigma near 0 and NaN images otherwise), as the
    converter of the released weights does, from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    module: Any
    for module in model.modules():
        if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
            w = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
            u = torch.randn(w.shape[0], generator=generator).to(w)
            v = F.normalize(w.t() @ F.normalize(u, dim=0), dim=0, eps=model.config.eps)
            module.weight_v.copy_(v)
            module.weight_u.copy_(F.normalize(w @ v, dim=0, eps=model.config.eps))
