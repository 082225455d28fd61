"""The imagegen plugin's modules have the upstream checkpoint layouts, key by key and shape by shape.

Each expected layout below is written out by hand, as data, from the upstream formats:
PyTorch's ``examples/dcgan/main.py`` (``netG``, saved as ``netG_epoch_N.pth``), rosinality's
``stylegan2-pytorch`` ``model.py`` (``Generator``, saved as ``g_ema`` by ``convert_weight.py``
and ``train.py``) and huggingface's ``pytorch-pretrained-biggan`` 0.1.1 (``BigGAN``, saved as
``pytorch_model.bin`` beside ``config.json``). A checkpoint in one of those layouts loads into
the plugin's module with a strict key check exactly when the names and shapes agree, so these
tests are what says that real files load; the other tests check the loading and serving code
on files written from the plugin's modules.

The full-size checks build on the ``meta`` device (shapes only, no memory).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import imagegen_models as im

Layout = dict[str, tuple[int, ...]]


def layout(module: torch.nn.Module) -> Layout:
    """Every state_dict key of ``module`` with its shape."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def assert_layout(module: torch.nn.Module, expected: Layout) -> None:
    got = layout(module)
    assert sorted(set(expected) - set(got)) == [], "keys the upstream layout has and the module lacks"
    assert sorted(set(got) - set(expected)) == [], "keys the module has and the upstream layout lacks"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert wrong == {}, "(module shape, upstream shape)"


def batch_norm_2d(name: str, channels: int) -> Layout:
    """torch's BatchNorm2d(channels): its two parameters and three buffers."""
    return {
        f"{name}.weight": (channels,),
        f"{name}.bias": (channels,),
        f"{name}.running_mean": (channels,),
        f"{name}.running_var": (channels,),
        f"{name}.num_batches_tracked": (),
    }


# -- DCGAN: PyTorch's examples/dcgan/main.py ---------------------------------------------------

# netG with --nz 16 --ngf 8 and nc 3: ConvTranspose2d weights are (in, out, 4, 4), bias=False;
# the Sequential's ReLUs (2, 5, 8, 11) and Tanh (13) hold nothing.
DCGAN_EXAMPLE_NZ16_NGF8: Layout = {
    "main.0.weight": (16, 64, 4, 4),
    **batch_norm_2d("main.1", 64),
    "main.3.weight": (64, 32, 4, 4),
    **batch_norm_2d("main.4", 32),
    "main.6.weight": (32, 16, 4, 4),
    **batch_norm_2d("main.7", 16),
    "main.9.weight": (16, 8, 4, 4),
    **batch_norm_2d("main.10", 8),
    "main.12.weight": (8, 3, 4, 4),
}


def test_dcgan_has_the_example_netG_layout():
    from modelplex_imagegen.dcgan import Generator

    assert_layout(Generator(nz=16, ngf=8, nc=3, image_size=64), DCGAN_EXAMPLE_NZ16_NGF8)
    grayscale = {**DCGAN_EXAMPLE_NZ16_NGF8, "main.12.weight": (8, 1, 4, 4)}  # --dataset mnist: nc 1
    assert_layout(Generator(nz=16, ngf=8, nc=1, image_size=64), grayscale)


def test_dcgan_default_is_the_example_default():
    """The example's defaults, --nz 100 --ngf 64: 3,576,704 parameters."""
    from modelplex_imagegen.dcgan import Generator

    with torch.device("meta"):
        net = Generator()
    assert layout(net)["main.0.weight"] == (100, 512, 4, 4)
    assert layout(net)["main.12.weight"] == (64, 3, 4, 4)
    assert sum(p.numel() for p in net.parameters()) == 3_576_704


# -- StyleGAN2: rosinality's stylegan2-pytorch model.py ------------------------------------------

# Generator(size=16, style_dim=8, n_mlp=2, channel_multiplier=1): 512 channels at every
# resolution up to 32. style.0 is PixelNorm (nothing to save); the mapping layers are
# EqualLinear (weight (out, in), bias). A StyledConv is conv (ModulatedConv2d: weight
# (1, out, in, k, k) and its modulation EqualLinear(style_dim, in)), noise (NoiseInjection:
# weight (1,)) and activate (FusedLeakyReLU: bias (out,)); an up-sampling one has the blur
# kernel as a buffer. ToRGB is conv (1x1, 3 outputs, no demodulation), bias (1, 3, 1, 1) and,
# except to_rgb1, upsample.kernel. noises.noise_i is (1, 1, 2**((i + 5) // 2)) squared.
ROSINALITY_SIZE16_STYLE8_MLP2: Layout = {
    "style.1.weight": (8, 8),
    "style.1.bias": (8,),
    "style.2.weight": (8, 8),
    "style.2.bias": (8,),
    "input.input": (1, 512, 4, 4),
    "conv1.conv.weight": (1, 512, 512, 3, 3),
    "conv1.conv.modulation.weight": (512, 8),
    "conv1.conv.modulation.bias": (512,),
    "conv1.noise.weight": (1,),
    "conv1.activate.bias": (512,),
    "to_rgb1.bias": (1, 3, 1, 1),
    "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
    "to_rgb1.conv.modulation.weight": (512, 8),
    "to_rgb1.conv.modulation.bias": (512,),
    "noises.noise_0": (1, 1, 4, 4),
    "noises.noise_1": (1, 1, 8, 8),
    "noises.noise_2": (1, 1, 8, 8),
    "noises.noise_3": (1, 1, 16, 16),
    "noises.noise_4": (1, 1, 16, 16),
    "convs.0.conv.weight": (1, 512, 512, 3, 3),
    "convs.0.conv.blur.kernel": (4, 4),
    "convs.0.conv.modulation.weight": (512, 8),
    "convs.0.conv.modulation.bias": (512,),
    "convs.0.noise.weight": (1,),
    "convs.0.activate.bias": (512,),
    "convs.1.conv.weight": (1, 512, 512, 3, 3),
    "convs.1.conv.modulation.weight": (512, 8),
    "convs.1.conv.modulation.bias": (512,),
    "convs.1.noise.weight": (1,),
    "convs.1.activate.bias": (512,),
    "convs.2.conv.weight": (1, 512, 512, 3, 3),
    "convs.2.conv.blur.kernel": (4, 4),
    "convs.2.conv.modulation.weight": (512, 8),
    "convs.2.conv.modulation.bias": (512,),
    "convs.2.noise.weight": (1,),
    "convs.2.activate.bias": (512,),
    "convs.3.conv.weight": (1, 512, 512, 3, 3),
    "convs.3.conv.modulation.weight": (512, 8),
    "convs.3.conv.modulation.bias": (512,),
    "convs.3.noise.weight": (1,),
    "convs.3.activate.bias": (512,),
    "to_rgbs.0.bias": (1, 3, 1, 1),
    "to_rgbs.0.upsample.kernel": (4, 4),
    "to_rgbs.0.conv.weight": (1, 3, 512, 1, 1),
    "to_rgbs.0.conv.modulation.weight": (512, 8),
    "to_rgbs.0.conv.modulation.bias": (512,),
    "to_rgbs.1.bias": (1, 3, 1, 1),
    "to_rgbs.1.upsample.kernel": (4, 4),
    "to_rgbs.1.conv.weight": (1, 3, 512, 1, 1),
    "to_rgbs.1.conv.modulation.weight": (512, 8),
    "to_rgbs.1.conv.modulation.bias": (512,),
}


def test_stylegan2_has_rosinalitys_generator_layout():
    from modelplex_imagegen.stylegan2 import StyleGAN2Generator, channels_for

    with torch.device("meta"):
        net = StyleGAN2Generator(16, style_dim=8, n_mlp=2, channels=channels_for(channel_multiplier=1))
    assert_layout(net, ROSINALITY_SIZE16_STYLE8_MLP2)


def test_stylegan2_blur_kernels_are_rosinalitys_buffers():
    """make_kernel([1, 3, 3, 1]) (the outer product over its sum, 64) times factor**2 = 4, in
    both the up-sampling convolution's Blur and ToRGB's Upsample: a g_ema file holds these values."""
    from modelplex_imagegen.stylegan2 import StyleGAN2Generator, channels_for

    net = StyleGAN2Generator(8, style_dim=4, n_mlp=1, channels=channels_for(channel_max=4))
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(taps, taps) / 64 * 4
    state = net.state_dict()
    torch.testing.assert_close(state["convs.0.conv.blur.kernel"], expected, rtol=0, atol=0)
    torch.testing.assert_close(state["to_rgbs.0.upsample.kernel"], expected, rtol=0, atol=0)


def test_stylegan2_ffhq_config_f_layout():
    """stylegan2-ffhq-config-f.pt's g_ema: size 1024, style_dim 512, n_mlp 8, channel_multiplier 2:
    171 tensors, 30,370,060 parameters; 16 StyledConvs after conv1, 8 ToRGBs after to_rgb1, 17 noises."""
    from modelplex_imagegen.stylegan2 import StyleGAN2Generator, channels_for, infer_architecture

    with torch.device("meta"):
        net = StyleGAN2Generator(1024, 512, 8, channels_for(channel_multiplier=2))
    got = layout(net)
    assert len(got) == 171
    assert sum(p.numel() for p in net.parameters()) == 30_370_060
    assert got["style.8.weight"] == (512, 512) and "style.9.weight" not in got
    assert got["convs.15.conv.weight"] == (1, 32, 32, 3, 3) and "convs.16.conv.weight" not in got
    # convs.2k and convs.2k+1 make 2**(k + 3) pixels: convs.6 the 64x64 maps (256 * 2 channels),
    # convs.8 up-samples to 128x128 (128 * 2 channels, from 512), convs.10 to 256x256.
    assert got["convs.6.conv.weight"] == (1, 512, 512, 3, 3)
    assert got["convs.8.conv.weight"] == (1, 256, 512, 3, 3)
    assert got["convs.10.conv.weight"] == (1, 128, 256, 3, 3)
    assert got["to_rgbs.7.conv.weight"] == (1, 3, 32, 1, 1) and "to_rgbs.8.bias" not in got
    assert got["noises.noise_16"] == (1, 1, 1024, 1024) and "noises.noise_17" not in got
    with torch.device("meta"):
        size, style_dim, n_mlp, channels = infer_architecture(net.state_dict())
    assert (size, style_dim, n_mlp) == (1024, 512, 8)
    assert channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}


# -- BigGAN-deep: pytorch-pretrained-biggan ---------------------------------------------------


def spectral_norm(name: str, weight: tuple[int, ...], bias: bool = True) -> Layout:
    """torch.nn.utils.spectral_norm on a Linear or Conv2d whose weight is ``weight``: the
    weight is saved as ``weight_orig``, with the buffers u (outputs) and v (inputs x kernel)."""
    out = {
        f"{name}.weight_orig": weight,
        f"{name}.weight_u": (weight[0],),
        f"{name}.weight_v": (math.prod(weight[1:]),),
    }
    if bias:
        out[f"{name}.bias"] = (weight[0],)
    return out


def biggan_batch_norm(name: str, channels: int, cond: int, n_stats: int) -> Layout:
    """BigGANBatchNorm(conditional=True): statistics per precomputed truncation, and scale and
    offset as spectral-normed Linear(cond, channels, bias=False)."""
    return {
        f"{name}.running_means": (n_stats, channels),
        f"{name}.running_vars": (n_stats, channels),
        **spectral_norm(f"{name}.scale", (channels, cond), bias=False),
        **spectral_norm(f"{name}.offset", (channels, cond), bias=False),
    }


# BigGANConfig(z_dim=4, num_classes=5, channel_width=8, n_stats=3,
#              layers=[[False, 2, 2], [True, 2, 1]], attention_layer_position=1).
# cond = 2 * z_dim = 8; gen_z makes 4 * 4 * 16 * channel_width = 2048; a GenBlock(in, out) has
# bn_0 on in, conv_0 1x1 in -> in // 4, conv_1 and conv_2 3x3, conv_3 1x1 -> out; SelfAttn(c)
# has 1x1 convolutions without bias: theta and phi c -> c // 8, g c -> c // 2, o_conv back to c.
BIGGAN_TINY_CONFIG = {
    "output_dim": 32,
    "z_dim": 4,
    "class_embed_dim": 4,
    "channel_width": 8,
    "num_classes": 5,
    "layers": [[False, 2, 2], [True, 2, 1]],
    "attention_layer_position": 1,
    "eps": 1e-4,
    "n_stats": 3,
}
BIGGAN_TINY: Layout = {
    "embeddings.weight": (4, 5),
    "generator.gen_z.weight_orig": (2048, 8),
    "generator.gen_z.weight_u": (2048,),
    "generator.gen_z.weight_v": (8,),
    "generator.gen_z.bias": (2048,),
    # layers.0: GenBlock(16, 16), no up-sampling
    **biggan_batch_norm("generator.layers.0.bn_0", 16, 8, 3),
    **spectral_norm("generator.layers.0.conv_0", (4, 16, 1, 1)),
    **biggan_batch_norm("generator.layers.0.bn_1", 4, 8, 3),
    **spectral_norm("generator.layers.0.conv_1", (4, 4, 3, 3)),
    **biggan_batch_norm("generator.layers.0.bn_2", 4, 8, 3),
    **spectral_norm("generator.layers.0.conv_2", (4, 4, 3, 3)),
    **biggan_batch_norm("generator.layers.0.bn_3", 4, 8, 3),
    **spectral_norm("generator.layers.0.conv_3", (16, 4, 1, 1)),
    # layers.1: SelfAttn(16), before the layer at attention_layer_position
    **spectral_norm("generator.layers.1.snconv1x1_theta", (2, 16, 1, 1), bias=False),
    **spectral_norm("generator.layers.1.snconv1x1_phi", (2, 16, 1, 1), bias=False),
    **spectral_norm("generator.layers.1.snconv1x1_g", (8, 16, 1, 1), bias=False),
    **spectral_norm("generator.layers.1.snconv1x1_o_conv", (16, 8, 1, 1), bias=False),
    "generator.layers.1.gamma": (1,),
    # layers.2: GenBlock(16, 8), up-sampling
    **biggan_batch_norm("generator.layers.2.bn_0", 16, 8, 3),
    **spectral_norm("generator.layers.2.conv_0", (4, 16, 1, 1)),
    **biggan_batch_norm("generator.layers.2.bn_1", 4, 8, 3),
    **spectral_norm("generator.layers.2.conv_1", (4, 4, 3, 3)),
    **biggan_batch_norm("generator.layers.2.bn_2", 4, 8, 3),
    **spectral_norm("generator.layers.2.conv_2", (4, 4, 3, 3)),
    **biggan_batch_norm("generator.layers.2.bn_3", 4, 8, 3),
    **spectral_norm("generator.layers.2.conv_3", (8, 4, 1, 1)),
    # the last batch norm is unconditional (weight and bias), then a 3x3 conv to channel_width
    "generator.bn.weight": (8,),
    "generator.bn.bias": (8,),
    "generator.bn.running_means": (3, 8),
    "generator.bn.running_vars": (3, 8),
    **spectral_norm("generator.conv_to_rgb", (8, 8, 3, 3)),
}


def test_biggan_has_the_pytorch_pretrained_biggan_layout(tmp_path):
    from modelplex_imagegen.biggan import BigGAN, BigGANConfig

    (tmp_path / "config.json").write_text(json.dumps(BIGGAN_TINY_CONFIG))
    net = BigGAN(BigGANConfig.from_json_file(tmp_path / "config.json"))
    assert len(BIGGAN_TINY) == 5 + 2 * (4 * 8 + 4 * 4) + 4 * 3 + 1 + 4 + 4
    assert_layout(net, BIGGAN_TINY)


def test_biggan_config_json_of_the_released_models():
    """The layers of config.json of biggan-deep-128, -256 and -512 (channel_width 128, z_dim 128)."""
    from modelplex_imagegen.biggan import BigGANConfig

    for resolution, layers in im.BIGGAN_DEEP_LAYERS.items():
        config = BigGANConfig.for_resolution(resolution)
        assert config.layers == layers
        assert (config.z_dim, config.channel_width, config.num_classes) == (128, 128, 1000)
        assert (config.attention_layer_position, config.n_stats, config.eps) == (8, 51, 1e-4)


@pytest.mark.parametrize(
    "resolution,tensors,parameters", [(128, 506, 50_388_609), (256, 602, 55_880_833), (512, 698, 56_163_905)]
)
def test_biggan_deep_released_sizes(resolution, tensors, parameters):
    """The released pytorch_model.bin files: 48 tensors a GenBlock, 13 in the attention layer."""
    from modelplex_imagegen.biggan import BigGAN, BigGANConfig
    from modelplex_imagegen.plugin import build_specs

    with torch.device("meta"):
        net = BigGAN(BigGANConfig.for_resolution(resolution))
    got = layout(net)
    assert len(got) == tensors
    assert sum(p.numel() for p in net.parameters()) == parameters
    assert got["embeddings.weight"] == (128, 1000)
    assert got["generator.gen_z.weight_orig"] == (4 * 4 * 16 * 128, 256)
    # the attention layer comes before config layer 8: (False, 2, 2) at 128, (False, 4, 4) above
    attention = 128 * im.BIGGAN_DEEP_LAYERS[resolution][8][1]
    assert got["generator.layers.8.gamma"] == (1,)
    assert got["generator.layers.8.snconv1x1_o_conv.weight_orig"] == (attention, attention // 2, 1, 1)
    assert got["generator.layers.9.bn_0.running_means"] == (51, attention)
    assert got["generator.conv_to_rgb.weight_orig"] == (128, 128, 3, 3)
    [spec] = [s for s in build_specs() if s.name == f"biggan-deep-{resolution}"]
    assert spec.variant(None).meta.num_params == pytest.approx(parameters, rel=0.005)


# -- modelplex's VAE: the format docs/image-generation.md documents ----------------------------

# ConvVAE(VAEConfig(image_size=16, channels=3, latent_dim=8, base_channels=8)): two levels
# from 4x4 to 16x16. The decoder: fc Linear(latent_dim, 16 * top), top = base * 2**(levels-1),
# then ConvTranspose2d(c, c // 2, 4, 2, 1) ... down to channels. The encoder: Conv2d(4, 2, 1)
# from channels up to top, then mean and log_var Linear(16 * top, latent_dim).
CONV_VAE_16: Layout = {
    "decoder.fc.weight": (256, 8),
    "decoder.fc.bias": (256,),
    "decoder.net.0.weight": (16, 8, 4, 4),
    "decoder.net.0.bias": (8,),
    "decoder.net.2.weight": (8, 3, 4, 4),
    "decoder.net.2.bias": (3,),
    "encoder.net.0.weight": (8, 3, 4, 4),
    "encoder.net.0.bias": (8,),
    "encoder.net.2.weight": (16, 8, 4, 4),
    "encoder.net.2.bias": (16,),
    "encoder.mean.weight": (8, 256),
    "encoder.mean.bias": (8,),
    "encoder.log_var.weight": (8, 256),
    "encoder.log_var.bias": (8,),
}


def test_vae_checkpoint_has_the_documented_keys_and_metadata(tmp_path):
    from safetensors import safe_open

    path, _ = im.save_vae(tmp_path)
    with safe_open(str(path), framework="pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        metadata = f.metadata()
    assert saved == CONV_VAE_16
    assert json.loads(metadata["modelplex.vae"]) == {
        "image_size": 16,
        "channels": 3,
        "latent_dim": 8,
        "base_channels": 8,
    }
