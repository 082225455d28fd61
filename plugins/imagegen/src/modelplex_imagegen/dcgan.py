"""DCGAN's generator, in the layout of PyTorch's DCGAN example (``examples/dcgan/main.py``).

``Generator(nz, ngf, nc, image_size)`` is a ``main`` Sequential of ConvTranspose2d,
BatchNorm2d and ReLU blocks ending in Tanh; at ``image_size`` 64 its state_dict keys
(``main.0.weight``, ``main.1.running_mean``, ...) are those of the example's ``netG``,
so its ``netG_epoch_N.pth`` files load as they are. Other powers of two add or remove
one up-sampling block per factor of two.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Generator", "init_weights"]


class Generator(nn.Module):
    """z of shape (N, nz, 1, 1) -> images (N, nc, image_size, image_size) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two of at least 8, got {image_size}")
        self.nz, self.nc, self.image_size = nz, nc, image_size
        mult = image_size // 8  # ngf * 8 channels at 4x4 for 64x64, as in the example
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * mult),
            nn.ReLU(True),
        ]
        while mult > 1:
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))  # type: ignore[no-any-return]


def init_weights(module: nn.Module) -> None:
    """The example's ``weights_init``: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d | nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
