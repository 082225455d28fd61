"""A small convolutional VAE of modelplex's own, and its checkpoint format.

The model: an encoder (strided 4x4 convolutions, then two linear heads for the mean and
the log-variance of a ``latent_dim`` Gaussian) and a decoder (a linear layer to
``base_channels * 2**(n-1)`` maps of 4x4, then transposed 4x4 convolutions that double the
size up to ``image_size``, ending in a sigmoid: pixel values in [0, 1]). Serving uses the
decoder only: images from latents drawn from the prior N(0, I).

The checkpoint: one ``.safetensors`` file holding the state_dict (``decoder.*`` keys, and
``encoder.*`` keys when the encoder is kept), with the architecture in the file's metadata
under ``"modelplex.vae"``: a JSON object with ``image_size``, ``channels``, ``latent_dim``
and ``base_channels``. :func:`save_vae` writes one; :func:`read_vae` reads one back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from modelplex.errors import ModelLoadError, WeightsNotFoundError

__all__ = ["METADATA_KEY", "ConvVAE", "VAEConfig", "read_vae", "save_vae"]

METADATA_KEY = "modelplex.vae"
"""The metadata key of the architecture in a VAE checkpoint."""


@dataclass(frozen=True)
class VAEConfig:
    """The architecture of a :class:`ConvVAE`."""

    image_size: int = 32
    channels: int = 3
    latent_dim: int = 64
    base_channels: int = 32

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two of at least 8, got {self.image_size}")

    @property
    def levels(self) -> int:
        """Doublings from 4x4 to ``image_size``."""
        return (self.image_size // 4).bit_length() - 1


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        top = config.base_channels * 2 ** (config.levels - 1)
        self.fc = nn.Linear(config.latent_dim, top * 16)
        layers: list[nn.Module] = []
        ch = top
        for level in range(config.levels):
            last = level == config.levels - 1
            out = config.channels if last else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1))
            layers.append(nn.Sigmoid() if last else nn.ReLU())
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        top = self.fc(z).view(z.shape[0], -1, 4, 4)
        return self.net(torch.relu(top))  # type: ignore[no-any-return]


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = config.channels, config.base_channels
        for _ in range(config.levels):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.ReLU()]
            ch_in, ch = ch, ch * 2
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.mean = nn.Linear(ch_in * 16, config.latent_dim)
        self.log_var = nn.Linear(ch_in * 16, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.mean(h), self.log_var(h)


class ConvVAE(nn.Module):
    """The VAE: ``encoder`` for training and reconstruction, ``decoder`` for serving."""

    def __init__(self, config: VAEConfig, with_encoder: bool = True) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config)
        self.encoder = Encoder(config) if with_encoder else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, mean and log-variance (the reparameterised sample in training)."""
        assert self.encoder is not None, "this VAE was loaded without its encoder"
        mean, log_var = self.encoder(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        return self.decoder(z), mean, log_var


def save_vae(vae: ConvVAE, path: str | Path) -> None:
    """Write ``vae`` as a modelplex VAE checkpoint (see the module doc)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps(asdict(vae.config))})


def read_vae(path: Path) -> tuple[VAEConfig, dict[str, torch.Tensor]]:
    """The architecture and the decoder's state_dict of a modelplex VAE checkpoint."""
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsNotFoundError(f"VAE checkpoint {path} does not exist or is not a file")
    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path}: a VAE checkpoint is a .safetensors file written by modelplex_imagegen.vae.save_vae"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
            state = {k: f.get_tensor(k) for k in f.keys() if k.startswith("decoder.")}  # noqa: SIM118
    except Exception as e:
        raise ModelLoadError(f"cannot read the safetensors file {path}: {e}") from None
    if raw is None:
        raise ModelLoadError(f"{path} has no {METADATA_KEY!r} metadata: write it with modelplex_imagegen.vae.save_vae")
    try:
        config = VAEConfig(**json.loads(raw))
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{path}: bad {METADATA_KEY!r} metadata {raw!r}: {e}") from None
    return config, state
