"""The settings of each image-generation spec (the ``settings`` table of a model's config).

The serving limits (``max_batch_size``, ``max_images_per_request``, ...) are the task's,
keys of the model's entry itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BigGANSettings",
    "DCGANSettings",
    "DiffusersVAESettings",
    "GeneratorSettings",
    "StyleGAN2Settings",
    "VAESettings",
]


class GeneratorSettings(BaseModel):
    """What every image-generation spec takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Parameter and activation dtype. Half precision is allowed on CUDA devices only. Latents
    and noise are drawn in float32 on the CPU whatever the dtype."""


class DCGANSettings(GeneratorSettings):
    """A DCGAN generator (PyTorch's DCGAN example). A checkpoint must fit these numbers."""

    nz: int = Field(default=100, ge=1, le=4096)
    """Length of the latent z."""
    ngf: int = Field(default=64, ge=1, le=1024)
    """Generator feature maps of the last block (the example's ``--ngf``)."""
    nc: int = Field(default=3, ge=1, le=4)
    """Image channels: 3 for RGB (CIFAR-10, LSUN, CelebA), 1 for grayscale (MNIST)."""
    image_size: int = Field(default=64, ge=8, le=1024)
    """Image height and width, a power of two; the example's layout is 64."""
    state_key: str | None = Field(default=None, min_length=1)
    """The key of a training checkpoint (a dict) that holds the generator's state_dict; unset
    tries ``netG``, ``generator``, ``G``, ``state_dict`` and the other usual keys."""


class BigGANSettings(GeneratorSettings):
    """A BigGAN-deep generator; the architecture comes from the folder's ``config.json``."""

    default_truncation: float = Field(default=0.4, gt=0, le=1)
    """The truncation of requests that set none (the package's README uses 0.4)."""
    channel_width: int = Field(default=128, ge=8, le=512)
    """For random weights only: the ``channel_width`` of the config (128 for the released models)."""


class StyleGAN2Settings(GeneratorSettings):
    """A StyleGAN2 generator (rosinality's layout). A checkpoint's own shapes set the
    architecture; ``size``, ``style_dim``, ``n_mlp``, ``channel_multiplier`` and
    ``channel_max`` are for random weights."""

    size: int = Field(default=256, ge=4, le=1024)
    """Output resolution (random weights)."""
    style_dim: int = Field(default=512, ge=1, le=2048)
    """Latent length (random weights)."""
    n_mlp: int = Field(default=8, ge=1, le=16)
    """Mapping-network layers (random weights)."""
    channel_multiplier: int = Field(default=2, ge=1, le=4)
    """2 for config-f, 1 otherwise (random weights)."""
    channel_max: int = Field(default=512, ge=1, le=512)
    """Channels at most per layer (random weights): 512 is the paper's; lower makes small test models."""
    noise: Literal["random", "const"] = "random"
    """``random``: each image's per-layer noise is drawn from its own generator (the reference's
    ``randomize_noise=True``); ``const``: the checkpoint's fixed ``noises.noise_N``."""
    default_truncation: float = Field(default=1.0, gt=0, le=1)
    """psi of requests that set none: 1 is no truncation; 0.5 to 0.7 are usual."""
    state_key: str | None = Field(default=None, min_length=1)
    """The key of the generator's state_dict in the checkpoint; unset tries ``g_ema``, then ``g``."""
    truncation_mean: int = Field(default=4096, ge=1, le=1_000_000)
    """Samples averaged for ``latent_avg`` when the checkpoint has none (seeded: the same each load)."""


class VAESettings(GeneratorSettings):
    """modelplex's own small convolutional VAE. A checkpoint carries its architecture; these
    are for random weights."""

    image_size: int = Field(default=32, ge=8, le=1024)
    """Image height and width, a power of two (random weights)."""
    channels: int = Field(default=3, ge=1, le=4)
    """Image channels (random weights)."""
    latent_dim: int = Field(default=64, ge=1, le=8192)
    """Latent length (random weights)."""
    base_channels: int = Field(default=32, ge=1, le=1024)
    """Feature maps of the outermost block (random weights)."""


class DiffusersVAESettings(GeneratorSettings):
    """A diffusers ``AutoencoderKL``; needs the ``diffusers`` extra (``pip install modelplex-imagegen[diffusers]``)."""

    image_size: int | None = Field(default=None, ge=8, le=4096)
    """Output height and width, a multiple of the VAE's down-sampling factor; unset uses the
    config's ``sample_size``."""
    subfolder: str | None = Field(default=None, min_length=1)
    """The folder of the VAE inside the weights folder (``vae`` for a Stable Diffusion pipeline)."""
