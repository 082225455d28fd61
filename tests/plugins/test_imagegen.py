"""The imagegen plugin in-process: registration is cheap, every checkpoint layout loads through
the real loading code (training dicts, DataParallel prefixes, folders, latent_avg or not) and
gives the images the saved module makes for the same seeds, and a bad file fails with a message
that says what to do. (That the modules have the upstream key layouts: test_imagegen_layouts.py.)"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

import imagegen_models as im
from modelplex.conformance import check_model, check_registration
from modelplex.errors import ModelLoadError, WeightsNotFoundError
from modelplex.specs import LoadContext, WeightsChoice
from modelplex.tasks.image_generation import ImageGenerator, ImageInput


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Once another thread of the process has run torch (a server's instance), every forward on
    this thread pays OpenMP wake-ups on a 2-core machine (benchmarks/bench_omp_teams.py): the
    tiny models here run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(spec_name: str, weights: str | Path, device: str = "cpu", **settings) -> ImageGenerator:
    """Build and load a model through the plugin's own factory, as the server does."""
    from modelplex_imagegen.plugin import build_specs

    spec = {s.name: s for s in build_specs()}[spec_name]
    ctx = LoadContext(
        model_name=spec_name,
        spec=spec,
        variant=spec.variant(None),
        weights=WeightsChoice.parse(str(weights)),
        device=device,
        settings=spec.settings(**settings),
    )
    model = spec.factory(ctx)
    model.load()
    return model


def run(model: ImageGenerator, seed: int, truncation: float = 1.0, class_index: int | None = None) -> torch.Tensor:
    """One image under the documented seeding (what the runtime does on its thread)."""
    g = torch.Generator().manual_seed(seed)
    z = model.sample_latent(g, truncation)
    if model.labels and class_index is None:
        class_index = int(torch.randint(len(model.labels), (1,), generator=g))
    with torch.inference_mode():
        return model.generate([ImageInput(z, class_index, truncation, g)])[0]


def test_registration_imports_no_torch_and_registers_every_family():
    result = check_registration("imagegen")
    assert set(result["specs"]) == {
        "dcgan",
        "stylegan2",
        "conv-vae",
        "diffusers-vae",
        "biggan-deep-128",
        "biggan-deep-256",
        "biggan-deep-512",
    }


@pytest.mark.parametrize("layout", ["example", "training", "dataparallel"])
def test_dcgan_checkpoint_layouts(tmp_path, layout):
    path, net = im.save_dcgan(tmp_path, layout)
    model = load("dcgan", path, nz=16, ngf=8)
    assert model.latent_size == 16 and model.image_shape == (3, 64, 64)
    for seed in (0, 1):
        torch.testing.assert_close(run(model, seed), im.reference("dcgan", net, seed)[0], atol=0, rtol=0)


def test_dcgan_training_dict_with_a_named_key_and_grayscale(tmp_path):
    net = im.dcgan_net(seed=5, nc=1)
    path = tmp_path / "ckpt.pth"
    torch.save({"ema_generator": net.state_dict(), "step": 10}, path)
    with pytest.raises(ModelLoadError, match="cannot find the generator's state_dict .* its keys: ema_generator, step"):
        load("dcgan", path, nz=16, ngf=8, nc=1)
    model = load("dcgan", path, nz=16, ngf=8, nc=1, state_key="ema_generator")
    assert model.image_shape == (1, 64, 64)
    torch.testing.assert_close(run(model, 3), im.reference("dcgan", net, 3)[0], atol=0, rtol=0)


def test_dcgan_settings_that_do_not_fit_the_checkpoint(tmp_path):
    path, _ = im.save_dcgan(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        load("dcgan", path, nz=100, ngf=8)
    assert "main.0.weight: file (16, 64, 4, 4) vs model (100, 64, 4, 4)" in str(info.value)
    assert "Set the settings nz, ngf, nc and image_size" in str(info.value)
    with pytest.raises(ModelLoadError, match=r"missing keys main.13.bias, .*main.15.weight"):
        load("dcgan", path, nz=16, ngf=8, image_size=128)


def test_stylegan2_without_latent_avg_averages_the_mapping(tmp_path):
    net = im.stylegan2_net()
    path = tmp_path / "train-style.pt"
    torch.save({"g": net.state_dict(), "g_ema": net.state_dict(), "d": {"x": torch.zeros(1)}, "g_optim": {}}, path)
    model = load("stylegan2", path, truncation_mean=256)
    with torch.no_grad():
        w = net.style(torch.randn(256, 16, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(model.latent_avg, w.mean(0))
    torch.testing.assert_close(
        run(model, 4, truncation=0.5),
        im.reference("stylegan2", net, 4, truncation=0.5, latent_avg=w.mean(0, keepdim=True))[0],
        atol=1e-5,
        rtol=0,
    )


def test_stylegan2_const_noise_uses_the_checkpoints_buffers(tmp_path):
    path, net, avg = im.save_stylegan2(tmp_path)
    model = load("stylegan2", path, noise="const")
    torch.testing.assert_close(run(model, 8), im.reference("stylegan2", net, 8, const_noise=True)[0], atol=0, rtol=0)
    random_noise = load("stylegan2", path)
    assert not torch.equal(run(random_noise, 8), run(model, 8))


def test_stylegan2_train_checkpoint_with_python_objects_is_refused(tmp_path):
    net = im.stylegan2_net()
    path = tmp_path / "010000.pt"
    torch.save({"g_ema": net.state_dict(), "args": argparse.Namespace(size=16)}, path)
    with pytest.raises(ModelLoadError, match=r"weights_only=True.*re-save the generator"):
        load("stylegan2", path)


def test_stylegan2_pickle_is_refused_before_reading(tmp_path):
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(b"\x80\x04not read at all")
    with pytest.raises(ModelLoadError, match="is a pickle: .*convert_weight.py"):
        load("stylegan2", path)


def test_biggan_folder_loads_strictly(tmp_path):
    folder, net = im.save_biggan(tmp_path / "biggan-deep-128")
    model = load("biggan-deep-128", folder)
    assert model.labels[1] == "goldfish" and len(model.labels) == 1000 and model.latent_size == 8
    torch.testing.assert_close(
        run(model, 6, truncation=0.4), im.reference("biggan", net, 6, truncation=0.4)[0], atol=1e-6, rtol=0
    )
    model = load("biggan-deep-128", folder / "pytorch_model.bin")  # the file names its folder
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["generator.extra.weight"] = torch.zeros(1)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="unexpected keys generator.extra.weight"):
        load("biggan-deep-128", folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        load("biggan-deep-128", folder)


def test_biggan_of_another_resolution_names_the_right_spec(tmp_path):
    folder, _ = im.save_biggan(tmp_path / "b")
    with pytest.raises(ModelLoadError, match="load it as biggan-deep-128"):
        load("biggan-deep-256", folder)


def test_random_biggan_gives_images_not_nan_and_the_same_each_load():
    first = load("biggan-deep-128", "random", channel_width=8)
    second = load("biggan-deep-128", "random", channel_width=8)
    a = run(first, 1, truncation=0.4)
    assert not a.isnan().any() and a.std() > 0
    assert torch.equal(a, run(second, 1, truncation=0.4))


def test_vae_checkpoint_round_trip_and_bad_files(tmp_path):
    path, vae = im.save_vae(tmp_path)
    model = load("conv-vae", path)
    assert model.latent_size == 8 and model.image_shape == (3, 16, 16)
    torch.testing.assert_close(run(model, 2), im.reference("vae", vae, 2)[0], atol=0, rtol=0)
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(bare))
    with pytest.raises(ModelLoadError, match="no 'modelplex.vae' metadata"):
        load("conv-vae", bare)
    (tmp_path / "vae.pt").write_bytes(b"not read")
    with pytest.raises(ModelLoadError, match="a VAE checkpoint is a .safetensors file"):
        load("conv-vae", tmp_path / "vae.pt")


def test_weights_that_are_missing_or_pretrained(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load("dcgan", tmp_path / "nope.pth")
    with pytest.raises(WeightsNotFoundError, match=r'no download of its own: give weights = "/path/to/stylegan2-ffhq'):
        load("stylegan2", "pretrained")


def test_half_precision_needs_cuda():
    with pytest.raises(ModelLoadError, match="dtype float16 needs a CUDA device"):
        load("dcgan", "random", dtype="float16")


def test_dcgan_conforms():
    check_model(
        {
            "spec": "dcgan",
            "weights": "random",
            "devices": ["cpu"],
            "settings": {"nz": 8, "ngf": 4, "image_size": 16},
            "max_batch_size": 4,
            "max_images_per_request": 12,  # the kit's probes stay within it
        }
    )


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="the diffusers extra is not installed")
def test_diffusers_autoencoder_kl_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    ).eval()
    vae.save_pretrained(tmp_path / "vae")
    model = load("diffusers-vae", tmp_path / "vae")
    assert model.latent_size == 4 * 8 * 8 and model.image_shape == (3, 16, 16)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4 * 8 * 8, generator=g)
    with torch.no_grad():
        expected = im.to_unit(vae.decode(z.view(1, 4, 8, 8)).sample[0])
    torch.testing.assert_close(run(model, 3), expected, atol=1e-6, rtol=0)


BOUNDS = {"dcgan": 1e-6, "stylegan2": 1e-5, "biggan": 1e-5, "vae": 1e-6}


def test_agreement_of_batches_with_each_image_alone(tmp_path):
    """The loaded generator on a batch against the saved module on each image alone: bit-identical
    alone, within BOUNDS in batches. Prints the table of docs/image-generation.md
    (``pytest tests/plugins/test_imagegen.py -k agreement -s``)."""
    dcgan_path, dcgan = im.save_dcgan(tmp_path / "d")
    sg2_path, sg2, avg = im.save_stylegan2(tmp_path / "s")
    biggan_dir, biggan = im.save_biggan(tmp_path / "b")
    vae_path, vae = im.save_vae(tmp_path / "v")
    cases = {
        "dcgan": (load("dcgan", dcgan_path, nz=16, ngf=8), dcgan, {}),
        "stylegan2": (load("stylegan2", sg2_path), sg2, {"latent_avg": avg[None]}),
        "biggan": (load("biggan-deep-128", biggan_dir), biggan, {"truncation": 0.4}),
        "vae": (load("conv-vae", vae_path), vae, {}),
    }
    for family, (model, net, options) in cases.items():
        t = options.get("truncation", 1.0)
        references = [im.reference(family, net, seed, **options)[0] for seed in range(8)]
        for batch in (1, 4, 8):
            inputs = []
            for seed in range(batch):
                g = torch.Generator().manual_seed(seed)
                z = model.sample_latent(g, t)
                c = int(torch.randint(len(model.labels), (1,), generator=g)) if model.labels else None
                inputs.append(ImageInput(z, c, t, g))
            with torch.inference_mode():
                out = model.generate(inputs)
            expected = torch.stack(references[:batch])
            diff = (out - expected).abs().max().item()
            levels = (im.quantize(out).int() - im.quantize(expected).int()).abs()
            print(
                f"{family:9} batch {batch:2}: max |diff| {diff:.1e}; PNG pixels differing "
                f"{int((levels > 0).sum())} of {levels.numel()} (max {int(levels.max())} level)"
            )
            assert diff == 0 if batch == 1 else diff <= BOUNDS[family]
            assert int(levels.max()) <= (0 if batch == 1 else 1)


# Known answers: the image of the tests' tiny models (tests/imagegen_models.py, these seeds),
# computed once outside the repository by the upstream modules themselves, with the same
# weights loaded into them: PyTorch's examples/dcgan/main.py Generator, rosinality's
# stylegan2-pytorch model.py at bef283a (its op CPU paths; channels capped at 32) and
# pytorch-pretrained-biggan 0.1.1, under the documented seeding (docs/image-generation.md).
# Each: (sum, sum of squares, pixels [0, 0, 0], [1, 5, 9], [2, H-1, 3], [0, H/2, W-1]) of the
# float image in [0, 1]. The plugin's forward passes gave the same bits on torch 2.14.1 (CPU);
# the tolerance leaves room for other CPUs' kernels only.
UPSTREAM_ANSWERS = [
    ("dcgan", 0, 1.0, [5880.42174, 2908.00515, 0.511254, 0.523097, 0.467348, 0.445776]),
    ("dcgan", 7, 1.0, [5883.24885, 2903.29557, 0.514402, 0.534405, 0.468634, 0.4356]),
    ("stylegan2", 0, 1.0, [472.26548, 349.64031, 0.756709, 0.810864, 0.765334, 1.0]),
    ("stylegan2", 7, 0.5, [573.65748, 483.45152, 0.582444, 0.938535, 0.859284, 0.707736]),
    ("biggan", 0, 0.4, [19170.05609, 10969.82805, 0.624323, 0.015458, 0.752649, 0.455379]),
    ("biggan", 7, 1.0, [16075.0281, 7761.59438, 0.712011, 0.011759, 0.736286, 0.462822]),
    # between two of the 51 precomputed truncations: the batch-norm statistics are interpolated
    ("biggan", 3, 0.555, [15683.01394, 7396.37866, 0.489537, 0.011888, 0.783288, 0.422584]),
]


@pytest.mark.parametrize("family,seed,truncation,answer", UPSTREAM_ANSWERS)
def test_images_equal_the_upstream_modules_known_answers(tmp_path, family, seed, truncation, answer):
    if family == "dcgan":
        path, _ = im.save_dcgan(tmp_path)
        model = load("dcgan", path, nz=16, ngf=8)
    elif family == "stylegan2":
        path, _, _ = im.save_stylegan2(tmp_path)
        model = load("stylegan2", path)
    else:
        path, _ = im.save_biggan(tmp_path)
        model = load("biggan-deep-128", path)
    image = run(model, seed, truncation).double()
    _, h, w = image.shape
    pixels = [image[0, 0, 0], image[1, 5, 9], image[2, h - 1, 3], image[0, h // 2, w - 1]]
    assert float(image.sum()) == pytest.approx(answer[0], rel=1e-6)
    assert float((image * image).sum()) == pytest.approx(answer[1], rel=1e-6)
    assert [float(p) for p in pixels] == pytest.approx(answer[2:], abs=2e-6)
