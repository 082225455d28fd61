"""The modelplex entry point: registers the image-generation specs.

Importing this module imports neither torch nor diffusers: the generator modules are
imported by the factories, when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelplex import LoadContext, ModelSpec, Task, Variant, hookimpl
from modelplex.tasks.image_generation import ImageGenerationMeta, ImageGenerator
from modelplex_imagegen.settings import (
    BigGANSettings,
    DCGANSettings,
    DiffusersVAESettings,
    StyleGAN2Settings,
    VAESettings,
)

__all__ = ["build_specs", "register_models"]

_BIGGAN_PARAMS = {128: 50_400_000, 256: 55_900_000, 512: 56_200_000}


def _dcgan(ctx: LoadContext[Any]) -> ImageGenerator:
    from modelplex_imagegen.generators import DCGANGenerator

    return DCGANGenerator(ctx)


def _biggan(resolution: int) -> Callable[[LoadContext[Any]], ImageGenerator]:
    def factory(ctx: LoadContext[Any]) -> ImageGenerator:
        from modelplex_imagegen.generators import BigGANGenerator

        return BigGANGenerator(ctx, resolution)

    return factory


def _stylegan2(ctx: LoadContext[Any]) -> ImageGenerator:
    from modelplex_imagegen.generators import StyleGAN2Generator

    return StyleGAN2Generator(ctx)


def _vae(ctx: LoadContext[Any]) -> ImageGenerator:
    from modelplex_imagegen.generators import VAEGenerator

    return VAEGenerator(ctx)


def _diffusers_vae(ctx: LoadContext[Any]) -> ImageGenerator:
    from modelplex_imagegen.diffusers_vae import DiffusersVAEGenerator

    return DiffusersVAEGenerator(ctx)


def _one(name: str, meta: ImageGenerationMeta, description: str = "") -> tuple[Variant, ...]:
    return (Variant(name, weights="", meta=meta, description=description),)


def build_specs() -> list[ModelSpec]:
    """The specs this plugin registers."""
    specs = [
        ModelSpec(
            name="dcgan",
            task=Task.IMAGE_GENERATION,
            factory=_dcgan,
            variants=_one("default", ImageGenerationMeta(family="dcgan", recipe="https://arxiv.org/abs/1511.06434")),
            settings=DCGANSettings,
            description="DCGAN generator; checkpoints of PyTorch's DCGAN example (netG_epoch_N.pth) or training dicts",
        ),
        ModelSpec(
            name="stylegan2",
            task=Task.IMAGE_GENERATION,
            factory=_stylegan2,
            variants=_one(
                "default", ImageGenerationMeta(family="stylegan2", recipe="https://arxiv.org/abs/1912.04958")
            ),
            settings=StyleGAN2Settings,
            description="StyleGAN2 generator; rosinality's stylegan2-pytorch .pt checkpoints ({'g_ema', 'latent_avg'})",
        ),
        ModelSpec(
            name="conv-vae",
            task=Task.IMAGE_GENERATION,
            factory=_vae,
            variants=_one("default", ImageGenerationMeta(family="vae")),
            settings=VAESettings,
            description="modelplex's small convolutional VAE (decoder on prior samples); .safetensors checkpoints",
        ),
        ModelSpec(
            name="diffusers-vae",
            task=Task.IMAGE_GENERATION,
            factory=_diffusers_vae,
            variants=_one("default", ImageGenerationMeta(family="vae")),
            settings=DiffusersVAESettings,
            accepts_weight_ids=True,
            description="a diffusers AutoencoderKL's decoder on prior samples (needs the diffusers extra)",
        ),
    ]
    for resolution, params in _BIGGAN_PARAMS.items():
        meta = ImageGenerationMeta(
            family="biggan",
            image_shape=(3, resolution, resolution),
            latent_size=128,
            num_classes=1000,
            num_params=params,
            recipe=f"https://tfhub.dev/deepmind/biggan-deep-{resolution}/1",
        )
        specs.append(
            ModelSpec(
                name=f"biggan-deep-{resolution}",
                task=Task.IMAGE_GENERATION,
                factory=_biggan(resolution),
                variants=_one("default", meta),
                settings=BigGANSettings,
                description=f"BigGAN-deep {resolution}px, ImageNet classes; pytorch-pretrained-biggan folders",
            )
        )
    return specs


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register every image-generation spec."""
    for spec in build_specs():
        register(spec)
