"""The image generators of each family: how each reads its weights and runs a batch.

Imported by the factories when a model loads (this module imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from modelplex.errors import ModelLoadError
from modelplex.specs import LoadContext
from modelplex.tasks.image_generation import ImageInput, truncated_normal
from modelplex_imagegen.base import TorchImageGenerator, imagenet_classes, seeded
from modelplex_imagegen.checkpoints import generator_state, load_strict, read_checkpoint, refuse_pickle, strip_prefix

__all__ = ["BigGANGenerator", "DCGANGenerator", "StyleGAN2Generator", "VAEGenerator"]


class DCGANGenerator(TorchImageGenerator):
    """DCGAN: z ~ N(0, I) of length ``nz`` -> ``netG`` -> images."""

    family = "dcgan"
    weights_hint = "netG_epoch_24.pth"

    def __init__(self, ctx: LoadContext[Any]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.latent_size = s.nz
        self.image_shape = (s.nc, s.image_size, s.image_size)

    def build(self) -> Any:
        from modelplex_imagegen.dcgan import Generator, init_weights

        s = self.ctx.settings
        path = self.checkpoint
        with seeded():
            net = Generator(s.nz, s.ngf, s.nc, s.image_size)
            init_weights(net)
        if path is not None:
            state = strip_prefix(generator_state(read_checkpoint(path), path, s.state_key))
            load_strict(net, state, path, "Set the settings nz, ngf, nc and image_size to the checkpoint's.")
        return net

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        z = self.to_device(torch.stack([i.latent for i in inputs]))
        return self.from_tanh(self.module(z))


class BigGANGenerator(TorchImageGenerator):
    """BigGAN-deep: class-conditional; z is a normal truncated to [-2, 2] times the truncation,
    which also picks the batch-norm statistics."""

    family = "biggan"
    weights_hint = "biggan-deep-128 (a folder of pytorch_model.bin and config.json)"

    def __init__(self, ctx: LoadContext[Any], resolution: int) -> None:
        super().__init__(ctx)
        self.resolution = resolution
        self.default_truncation = ctx.settings.default_truncation
        self.latent_size = 128
        self.image_shape = (3, resolution, resolution)

    def build(self) -> Any:
        from modelplex_imagegen.biggan import BigGAN, BigGANConfig, prepare_random

        path = self.checkpoint
        if path is None:
            config = BigGANConfig.for_resolution(self.resolution, channel_width=self.ctx.settings.channel_width)
            with seeded():
                model = BigGAN(config)
            prepare_random(model)
        else:
            refuse_pickle(
                path, "Give the folder of pytorch_model.bin and config.json that pytorch-pretrained-biggan uses."
            )
            folder = path.parent if path.is_file() else path
            weights, config_file = folder / "pytorch_model.bin", folder / "config.json"
            for needed in (weights, config_file):
                if not needed.is_file():
                    raise ModelLoadError(
                        f"{folder} is not a pytorch-pretrained-biggan folder: {needed.name} is missing "
                        "(it needs pytorch_model.bin and config.json)"
                    )
            try:
                config = BigGANConfig.from_json_file(config_file)
            except (ValueError, TypeError) as e:
                raise ModelLoadError(f"cannot read {config_file}: {e}") from None
            model = BigGAN(config)
            state = read_checkpoint(weights)
            if not isinstance(state, dict):
                raise ModelLoadError(f"{weights} holds a {type(state).__name__}, not a state_dict")
            load_strict(model, strip_prefix(state), weights, "Is config.json the one saved with these weights?")
        if config.output_dim != self.resolution:
            raise ModelLoadError(
                f"{self.ctx.spec.name} makes {self.resolution}x{self.resolution} images but the config's output_dim "
                f"is {config.output_dim}: load it as biggan-deep-{config.output_dim}"
            )
        self.latent_size = config.z_dim
        self.num_classes = config.num_classes
        self.labels = (
            imagenet_classes() if config.num_classes == 1000 else tuple(f"class_{i}" for i in range(config.num_classes))
        )
        return model

    def sample_latent(self, generator: torch.Generator, truncation: float) -> torch.Tensor:
        return truncated_normal(self.latent_size, generator, truncation)

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        # The truncation also picks the batch-norm statistics; the inputs of a call share it.
        z = self.to_device(torch.stack([i.latent for i in inputs]))
        labels = torch.zeros(len(inputs), self.num_classes)
        labels[torch.arange(len(inputs)), [i.class_index for i in inputs]] = 1.0
        return self.from_tanh(self.module(z, self.to_device(labels), inputs[0].truncation))


class StyleGAN2Generator(TorchImageGenerator):
    """StyleGAN2: z ~ N(0, I) -> mapping -> w, truncated toward ``latent_avg`` -> synthesis,
    with per-layer noise from each image's own generator (or the checkpoint's fixed noise)."""

    family = "stylegan2"
    weights_hint = "stylegan2-ffhq-config-f.pt"

    def __init__(self, ctx: LoadContext[Any]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.default_truncation = s.default_truncation
        self.latent_size = s.style_dim
        self.image_shape = (3, s.size, s.size)
        self.latent_avg: torch.Tensor | None = None
        self._stored_avg: torch.Tensor | None = None

    def build(self) -> Any:
        from modelplex_imagegen.stylegan2 import StyleGAN2Generator as Net
        from modelplex_imagegen.stylegan2 import channels_for, infer_architecture

        s = self.ctx.settings
        path = self.checkpoint
        if path is None:
            with seeded():
                net = Net(s.size, s.style_dim, s.n_mlp, channels_for(s.channel_multiplier, s.channel_max))
        else:
            refuse_pickle(
                path,
                "Convert NVIDIA's pickle with rosinality's stylegan2-pytorch: "
                "`python convert_weight.py --repo ~/stylegan2 stylegan2-ffhq-config-f.pkl` (in an environment you "
                'trust) writes stylegan2-ffhq-config-f.pt, {"g_ema", "latent_avg"}: give that file.',
            )
            checkpoint = read_checkpoint(path)
            state = strip_prefix(generator_state(checkpoint, path, s.state_key, keys=("g_ema", "g")))
            try:
                size, style_dim, n_mlp, channels = infer_architecture(state)
            except KeyError as e:
                raise ModelLoadError(
                    f"{path} is not a StyleGAN2 generator in rosinality's layout: no key {e}"
                ) from None
            net = Net(size, style_dim, n_mlp, channels)
            load_strict(net, state, path)
            avg = checkpoint.get("latent_avg") if isinstance(checkpoint, dict) else None
            if avg is not None:
                if not isinstance(avg, torch.Tensor) or avg.numel() != style_dim:
                    raise ModelLoadError(f"{path}: latent_avg must be a tensor of {style_dim} values")
                self._stored_avg = avg.reshape(style_dim).float()
        self.latent_size = net.style_dim
        self.image_shape = (3, net.size, net.size)
        return net

    def after_load(self) -> None:
        if self._stored_avg is not None:
            self.latent_avg = self.to_device(self._stored_avg)
        else:
            with torch.inference_mode():
                self.latent_avg = self.module.mean_latent(
                    self.ctx.settings.truncation_mean, torch.Generator().manual_seed(0)
                )

    def sample_latent(self, generator: torch.Generator, truncation: float) -> torch.Tensor:
        return torch.randn(self.latent_size, generator=generator)  # truncation acts on w

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        net = self.module
        w = net.style(self.to_device(torch.stack([i.latent for i in inputs])))
        psi = self.to_device(torch.tensor([[i.truncation] for i in inputs]))
        # Only rows with psi < 1 are moved, as in the reference: at 1, avg + (w - avg) may round differently.
        w = torch.where(psi < 1, self.latent_avg + psi * (w - self.latent_avg), w)
        if self.ctx.settings.noise == "const":
            noise = net.const_noise()
        else:
            shapes = net.noise_shapes()
            per_image = [[torch.randn(shape, generator=i.generator) for shape in shapes] for i in inputs]
            noise = [self.to_device(torch.cat([layers[k] for layers in per_image])) for k in range(len(shapes))]
        return self.from_tanh(net.synthesis(w, noise))


class VAEGenerator(TorchImageGenerator):
    """modelplex's small conv VAE: z ~ N(0, I) -> decoder -> images in [0, 1]."""

    family = "vae"
    weights_hint = "vae.safetensors"

    def __init__(self, ctx: LoadContext[Any]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.latent_size = s.latent_dim
        self.image_shape = (s.channels, s.image_size, s.image_size)

    def build(self) -> Any:
        from modelplex_imagegen.vae import Decoder, VAEConfig, read_vae

        s = self.ctx.settings
        path = self.checkpoint
        if path is None:
            config = VAEConfig(s.image_size, s.channels, s.latent_dim, s.base_channels)
            with seeded():
                decoder = Decoder(config)
        else:
            config, state = read_vae(Path(path))
            decoder = Decoder(config)
            load_strict(decoder, {k.removeprefix("decoder."): v for k, v in state.items()}, path)
        self.latent_size = config.latent_dim
        self.image_shape = (config.channels, config.image_size, config.image_size)
        return decoder

    def generate(self, inputs: Sequence[ImageInput]) -> torch.Tensor:
        z = self.to_device(torch.stack([i.latent for i in inputs]))
        return self.module(z).float().clamp(0, 1).cpu()
