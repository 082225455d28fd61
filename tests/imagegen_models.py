"""Tiny image generators for the tests: the imagegen plugin's own modules with random weights,
saved in each real checkpoint layout (PyTorch's DCGAN example, rosinality's StyleGAN2 ``.pt``,
the pytorch-pretrained-biggan folder, modelplex's VAE ``.safetensors``), and the image the module
makes in process for a seed under the documented seeding:
``g = torch.Generator().manual_seed(seed)``; the latent from ``g``; then, for a class-conditional
model without a class, ``torch.randint(num_classes, (1,), generator=g)``; then StyleGAN2's
per-layer noise from ``g``, layer by layer.

That the modules have the upstream layouts is checked against hand-written key lists in
``tests/plugins/test_imagegen_layouts.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from modelplex_imagegen import biggan, dcgan, stylegan2, vae

DCGAN = {"nz": 16, "ngf": 8, "nc": 3, "image_size": 64}
STYLEGAN2 = {"size": 16, "style_dim": 16, "n_mlp": 2, "channel_max": 32}
VAE = {"image_size": 16, "channels": 3, "latent_dim": 8, "base_channels": 8}

_LAYERS_128 = [
    [False, 16, 16],
    [True, 16, 16],
    [False, 16, 16],
    [True, 16, 8],
    [False, 8, 8],
    [True, 8, 4],
    [False, 4, 4],
    [True, 4, 2],
    [False, 2, 2],
    [True, 2, 1],
]
_LAYERS_256 = [
    [False, 16, 16],
    [True, 16, 16],
    [False, 16, 16],
    [True, 16, 8],
    [False, 8, 8],
    [True, 8, 8],
    [False, 8, 8],
    [True, 8, 4],
    [False, 4, 4],
    [True, 4, 2],
    [False, 2, 2],
    [True, 2, 1],
]
BIGGAN_DEEP_LAYERS = {128: _LAYERS_128, 256: _LAYERS_256, 512: [*_LAYERS_256, [False, 1, 1], [True, 1, 1]]}
"""``layers`` of the config.json of the released biggan-deep-128, -256 and -512 (up-sample,
in and out channel multipliers), written out from pytorch-pretrained-biggan's converter."""

BIGGAN_CONFIG = {
    "output_dim": 128,
    "z_dim": 8,
    "class_embed_dim": 8,
    "channel_width": 4,
    "num_classes": 1000,
    "layers": _LAYERS_128,
    "attention_layer_position": 8,
    "eps": 1e-4,
    "n_stats": 51,
}
"""A tiny model of the biggan-deep-128 layout: the config.json fields pytorch-pretrained-biggan
writes (``BigGANConfig.to_json_string``), with a small channel_width and z_dim."""


def dcgan_net(seed: int = 1, nc: int = 3) -> dcgan.Generator:
    """The example's netG (64x64) with random weights: batch-norm statistics and shifts drawn too
    (a trained network's are not 0 and 1), and convolutions scaled to their fan-in so that the
    images span [0, 1] (the example's initial N(0, 0.02) makes almost uniform grey images)."""
    torch.manual_seed(seed)
    net = dcgan.Generator(DCGAN["nz"], DCGAN["ngf"], nc, DCGAN["image_size"])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                torch.nn.init.normal_(m.weight, 0.0, (4 * m.weight.shape[0]) ** -0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(m.weight, 1.0, 0.02)
                torch.nn.init.normal_(m.bias, 0.0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def save_dcgan(folder: Path, layout: str = "example", seed: int = 1) -> tuple[Path, dcgan.Generator]:
    """``example``: netG_epoch_3.pth of the state_dict, as the example saves it; ``training``: a
    dict with netG, netD and an optimizer's state; ``dataparallel``: keys prefixed ``module.``."""
    net = dcgan_net(seed)
    state = net.state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "example":
        path = folder / "netG_epoch_3.pth"
        torch.save(state, path)
    elif layout == "training":
        path = folder / "checkpoint.pt"
        optim = torch.optim.Adam(net.parameters(), lr=2e-4)
        torch.save(
            {
                "epoch": 3,
                "netG": state,
                "netD": {"main.0.weight": torch.zeros(2, 3, 4, 4)},
                "optimizerG": optim.state_dict(),
            },
            path,
        )
    elif layout == "dataparallel":
        path = folder / "netG_dp.pth"
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        raise ValueError(layout)
    return path, net


def stylegan2_net(seed: int = 2) -> stylegan2.StyleGAN2Generator:
    """Rosinality's layout at 16x16 with at most 32 channels, random weights."""
    torch.manual_seed(seed)
    channels = stylegan2.channels_for(channel_multiplier=1, channel_max=STYLEGAN2["channel_max"])
    net = stylegan2.StyleGAN2Generator(STYLEGAN2["size"], STYLEGAN2["style_dim"], STYLEGAN2["n_mlp"], channels)
    with torch.no_grad():  # noise strengths and biases start at 0 upstream: make them matter
        for name, p in net.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
            elif name.endswith("activate.bias") or (name.endswith(".bias") and p.ndim == 4):  # ToRGB
                p.normal_(0, 0.1)
    return net.eval()


@torch.no_grad()
def mean_latent(net: stylegan2.StyleGAN2Generator, n: int = 64, seed: int = 5) -> torch.Tensor:
    """What convert_weight.py stores as latent_avg: the mean mapped latent, (style_dim,)."""
    z = torch.randn(n, net.style_dim, generator=torch.Generator().manual_seed(seed))
    return net.style(z).mean(0)


def save_stylegan2(folder: Path, seed: int = 2) -> tuple[Path, stylegan2.StyleGAN2Generator, torch.Tensor]:
    """convert_weight.py's layout: {"g_ema": state_dict, "latent_avg": tensor}."""
    net = stylegan2_net(seed)
    latent_avg = mean_latent(net)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stylegan2-tiny.pt"
    torch.save({"g_ema": net.state_dict(), "latent_avg": latent_avg}, path)
    return path, net, latent_avg


def biggan_net(seed: int = 3) -> biggan.BigGAN:
    """A tiny BigGAN-deep-128 layout made usable as the plugin's prepare code does for random
    weights (one power iteration of every spectral norm), with batch-norm statistics and the
    last batch norm's affine parameters drawn too."""
    torch.manual_seed(seed)
    net = biggan.BigGAN(biggan.BigGANConfig(**BIGGAN_CONFIG))
    with torch.no_grad():
        net.generator.bn.weight.normal_(1, 0.1)
        net.generator.bn.bias.normal_(0, 0.1)
        for module in net.modules():
            if isinstance(module, biggan.BigGANBatchNorm):
                module.running_means.normal_(0, 0.1)
                module.running_vars.uniform_(0.5, 1.5)
    biggan.prepare_random(net, seed)
    return net.eval()


def save_biggan(folder: Path, seed: int = 3) -> tuple[Path, biggan.BigGAN]:
    """The pytorch-pretrained-biggan folder: pytorch_model.bin (the state_dict) and config.json."""
    net = biggan_net(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(BIGGAN_CONFIG, indent=2, sort_keys=True) + "\n")
    return folder, net


def save_vae(folder: Path, seed: int = 4) -> tuple[Path, vae.ConvVAE]:
    """modelplex's VAE checkpoint (encoder and decoder), written by ``vae.save_vae``."""
    torch.manual_seed(seed)
    model = vae.ConvVAE(vae.VAEConfig(**VAE)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vae.safetensors"
    vae.save_vae(model, path)
    return path, model


SPECS = {"dcgan": "dcgan", "stylegan2": "stylegan2", "biggan": "biggan-deep-128", "vae": "conv-vae"}
"""Each family's spec name."""


def save_every_family(root: Path) -> dict:
    """One tiny generator of each family saved under ``root``: family -> (weights path, the
    module, the entry's settings), and ``"latent_avg"``: StyleGAN2's mean latent."""
    dcgan_path, dcgan = save_dcgan(root / "dcgan")
    sg2_path, sg2, latent_avg = save_stylegan2(root / "sg2")
    biggan_dir, biggan = save_biggan(root / "biggan-deep-128")
    vae_path, vae = save_vae(root / "vae")
    return {
        "dcgan": (dcgan_path, dcgan, {"nz": 16, "ngf": 8}),
        "stylegan2": (sg2_path, sg2, {}),
        "biggan": (biggan_dir, biggan, {}),
        "vae": (vae_path, vae, {}),
        "latent_avg": latent_avg,
    }


def truncated(size: int, g: torch.Generator, truncation: float) -> torch.Tensor:
    """The documented truncated normal: inverse normal CDF of a uniform in [Phi(-2), Phi(2)]."""
    low = torch.special.ndtr(torch.tensor(-2.0, dtype=torch.float64))
    u = torch.rand(size, generator=g, dtype=torch.float64)
    return (torch.special.ndtri(low + u * (1 - 2 * low)) * truncation).float()


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def reference(
    family: str,
    net,
    seed: int,
    *,
    truncation: float = 1.0,
    class_index: int | None = None,
    latent_avg: torch.Tensor | None = None,
    latent: torch.Tensor | None = None,
    const_noise: bool = False,
):
    """(image (C, H, W) in [0, 1], class index): ``net``, run here on one image, for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    if family in ("dcgan", "vae"):
        size = DCGAN["nz"] if family == "dcgan" else VAE["latent_dim"]
        z = torch.randn(size, generator=g) if truncation >= 1 else truncated(size, g, truncation)
        z = z if latent is None else latent
        if family == "dcgan":
            return to_unit(net(z.view(1, -1, 1, 1))[0]), None
        return net.decoder(z[None])[0].clamp(0, 1), None
    if family == "stylegan2":
        z = torch.randn(STYLEGAN2["style_dim"], generator=g)
        z = z if latent is None else latent
        w = net.style(z[None])
        if truncation < 1:  # rosinality's truncation trick, toward latent_avg
            w = latent_avg + truncation * (w - latent_avg)
        buffers = [getattr(net.noises, f"noise_{i}") for i in range(net.num_layers)]
        noise = buffers if const_noise else [torch.randn(b.shape, generator=g) for b in buffers]
        return to_unit(net.synthesis(w, noise)[0]), None
    if family == "biggan":
        z = truncated(BIGGAN_CONFIG["z_dim"], g, truncation)
        z = z if latent is None else latent
        if class_index is None:
            class_index = int(torch.randint(BIGGAN_CONFIG["num_classes"], (1,), generator=g))
        onehot = torch.zeros(1, BIGGAN_CONFIG["num_classes"])
        onehot[0, class_index] = 1
        return to_unit(net(z[None], onehot, truncation)[0]), class_index
    raise ValueError(family)


def tensor_of(response) -> torch.Tensor:
    """The FLOAT32 image of a Generate/Interpolate response."""
    t = response.image.tensor
    return torch.frombuffer(bytearray(t.data), dtype=torch.float32).reshape(tuple(t.shape))


def png_pixels(data: bytes) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def quantize(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)
