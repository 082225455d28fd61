"""A diffusers ``AutoencoderKL`` as an image generator: its decoder on samples of its prior.

Needs the ``diffusers`` extra; imported by the factory only, as importing diffusers takes
seconds. Latents are N(0, I) in the VAE's own latent space (what its KL term pulls toward),
not scaled by ``scaling_factor`` (that scale is for a diffusion model's inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from modelplex.errors import ModelLoadError, WeightsNotFoundError
from modelplex.specs import LoadContext, WeightsSource
from modelplex.tasks.image_generation import ImageInput
from modelplex_imagegen.base import TorchImageGenerator, seeded

__all__ = ["DiffusersVAEGenerator"]


class DiffusersVAEGenerator(TorchImageGenerator):
    """``AutoencoderKL.decode`` on z ~ N(0, I) of shape (latent_channels, H/f, W/f), flattened."""

    family = "vae"
    weights_hint = "sd-vae-ft-mse (a folder with config.json and diffusion_pytorch_model.safetensors)"

    def __init__(self, ctx: LoadContext[Any]) -> None:
        super().__init__(ctx)
        self.latent_shape: tuple[int, int, int] = (4, 32, 32)
        self.latent_size = math.prod(self.latent_shape)
        self.image_shape = (3, 256, 256)

    def build(self) -> Any:
        try:
            from diffusers import AutoencoderKL
        except ImportError:
            raise ModelLoadError(
                "spec 'diffusers-vae' needs diffusers: pip install 'modelplex-imagegen[diffusers]'"
            ) from None
        s, weights = self.ctx.settings, self.ctx.weights
        options: dict[str, Any] = {"subfolder": s.subfolder} if s.subfolder else {}
        if weights.source is WeightsSource.RANDOM:
            with seeded():
                vae = AutoencoderKL()
        else:
            where = str(weights.path) if weights.source is WeightsSource.CHECKPOINT else weights.id
            if where is None:
                raise WeightsNotFoundError(
                    "spec 'diffusers-vae' needs the weights named: a folder (weights = \"/path/sd-vae-ft-mse\") "
                    'or a hub id (weights = "stabilityai/sd-vae-ft-mse")'
                )
            try:
                vae = AutoencoderKL.from_pretrained(where, local_files_only=not weights.allow_download, **options)
            except (OSError, ValueError) as e:
                raise WeightsNotFoundError(f"cannot load an AutoencoderKL from {where}: {e}") from None
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        size = s.image_size or int(vae.config.sample_size)
        if size % factor:
            raise ModelLoadError(f"image_size {size} is not a multiple of this VAE's down-sampling factor {factor}")
        self.latent_shape = (int(vae.config.latent_channels), size // factor, size // factor)
        self.latent_size = math.prod(self.latent_shape)
        self.image_shape = (int(vae.config.out_channels), size, size)
        return vae

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        z = self.to_device(torch.stack([i.latent for i in inputs]).view(len(inputs), *self.latent_shape))
        return self.from_tanh(self.module.decode(z).sample)
