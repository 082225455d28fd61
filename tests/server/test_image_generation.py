"""ImageGeneration over real gRPC, with tiny generators built from the imagegen plugin's modules
with random weights, saved in each real layout (DCGAN example's netG_epoch_N.pth, rosinality's
{g_ema, latent_avg}, pytorch-pretrained-biggan's folder, modelplex's VAE safetensors) and loaded
by the server through the plugin's loading code: images equal the saved module's, run in process
for the same seeds under the documented seeding, alone or batched with concurrent callers, with
classes, truncation, latents, interpolation and every format."""

from __future__ import annotations

import io
import math
import threading

import grpc
import pytest
import torch

import imagegen_models as im
from modelplex.testing import running_server
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc

FLOAT32 = pb.ImageOutput(format=pb.IMAGE_FORMAT_FLOAT32)
# A batch of several images runs other CPU kernels than a batch of one (matrix-matrix instead
# of matrix-vector products, a grouped convolution with more groups), which round a little
# differently: last-bit differences for DCGAN and the VAE, about 1e-6 for BigGAN and StyleGAN2.
# With pad_batches every pass has the same shape and the bits are the same.
ATOL = {"dcgan": 1e-6, "vae": 1e-6, "biggan": 1e-5, "stylegan2": 1e-5}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return im.save_every_family(tmp_path_factory.mktemp("imagegen"))


SPECS = im.SPECS


@pytest.fixture(scope="module")
def server(models):
    entries = [
        {
            "name": name,
            "spec": SPECS[name],
            "weights": str(models[name][0]),
            "devices": ["cpu"],
            "settings": models[name][2],
            "max_batch_size": 4,
        }
        for name in SPECS
    ]
    # A batch delay makes concurrent callers share batches (counted below, never timed).
    for name in ("dcgan", "stylegan2"):
        entries.append(
            {
                **entries[list(SPECS).index(name)],
                "name": f"{name}-batched",
                "max_batch_size": 16,
                "max_batch_delay_ms": 300,
                "pad_batches": True,
            }
        )
    with running_server({"models": entries}) as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.ImageGenerationStub(channel)


def generate(stub, model, **fields):
    return list(stub.Generate(pb.ImageGenerationGenerateRequest(model=model, **fields), timeout=60))


def expected(models, family, seed, **options):
    net = models[family][1]
    avg = models["latent_avg"] if family == "stylegan2" else None
    if family == "biggan":
        options.setdefault("truncation", 0.4)  # BigGANSettings.default_truncation
    return im.reference(family, net, seed, latent_avg=avg, **options)


@pytest.mark.parametrize("family", list(SPECS))
def test_images_equal_the_in_process_modules_for_the_same_seeds(stub, models, family):
    responses = generate(stub, family, num_images=6, seed=40, output=FLOAT32, request_id="r7")
    assert [r.index for r in responses] == list(range(6))
    assert [r.seed for r in responses] == list(range(40, 46))
    assert all(r.request_id == "r7" and r.model == family for r in responses)
    for r in responses:
        image, class_index = expected(models, family, r.seed)
        got = im.tensor_of(r)
        assert got.shape == image.shape == (r.image.channels, r.image.height, r.image.width)
        torch.testing.assert_close(got, image, atol=ATOL[family], rtol=0)
        assert r.class_index == (class_index if class_index is not None else -1)


@pytest.mark.parametrize("family", list(SPECS))
def test_png_holds_the_in_process_pixels(stub, models, family):
    [r] = generate(stub, family, num_images=1, seed=7)
    assert r.image.format == pb.IMAGE_FORMAT_PNG and r.image.encoded.startswith(b"\x89PNG")
    pixels = im.png_pixels(r.image.encoded)
    reference = im.quantize(expected(models, family, 7)[0])
    assert pixels.shape == reference.shape
    assert (pixels.int() - reference.int()).abs().max() <= (0 if ATOL[family] == 0 else 1)


@pytest.mark.parametrize("family", ["dcgan", "stylegan2"])
def test_a_seed_gives_the_same_bits_alone_and_batched_with_concurrent_callers(server, stub, family):
    """With pad_batches, bit for bit; see ATOL for the difference without it."""
    model = f"{family}-batched"
    alone = {s: im.tensor_of(generate(stub, model, num_images=1, seed=s, output=FLOAT32)[0]) for s in (4, 11)}
    instance = server.server.registry.describe(model).instances[0]
    batches_before = instance.completed
    results: dict[int, list] = {}
    seeds = [0, 3, 5, 8, 11, 20]

    def call(seed: int) -> None:
        results[seed] = generate(stub, model, num_images=2, seed=seed, output=FLOAT32)

    threads = [threading.Thread(target=call, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = instance.completed - batches_before
    assert batches < len(seeds), "the concurrent calls were not batched together"
    assert torch.equal(im.tensor_of(results[3][1]), alone[4])  # the second image of a request
    assert torch.equal(im.tensor_of(results[11][0]), alone[11])
    # seed 3's second image (seed 4) and seed 5's first are different images
    assert not torch.equal(im.tensor_of(results[3][1]), im.tensor_of(results[5][0]))


def test_a_request_larger_than_a_batch_streams_in_pieces_in_order(server, stub):
    responses = generate(stub, "dcgan", num_images=10, seed=2**64 - 3)
    assert [r.index for r in responses] == list(range(10))
    assert [r.seed for r in responses] == [(2**64 - 3 + i) % 2**64 for i in range(10)]


def test_an_unset_seed_is_drawn_and_reported(stub, models):
    responses = generate(stub, "dcgan", num_images=2, output=FLOAT32)
    assert responses[1].seed == (responses[0].seed + 1) % 2**64
    for r in responses:
        torch.testing.assert_close(im.tensor_of(r), expected(models, "dcgan", r.seed)[0], atol=0, rtol=0)


def test_biggan_classes_by_name_index_or_drawn(stub, models):
    by_name = generate(stub, "biggan", num_images=2, seed=9, class_name="  Goldfish ", output=FLOAT32)
    by_index = generate(stub, "biggan", num_images=2, seed=9, class_index=1, output=FLOAT32)
    for a, b in zip(by_name, by_index, strict=True):
        assert a.class_index == b.class_index == 1 and a.class_name == b.class_name == "goldfish"
        assert torch.equal(im.tensor_of(a), im.tensor_of(b))
        torch.testing.assert_close(
            im.tensor_of(a), expected(models, "biggan", a.seed, class_index=1)[0], atol=1e-5, rtol=0
        )
    drawn = generate(stub, "biggan", num_images=3, seed=100)
    expected_classes = [expected(models, "biggan", 100 + i)[1] for i in range(3)]
    assert [r.class_index for r in drawn] == expected_classes
    categories = torchvision_categories()
    assert [r.class_name for r in drawn] == [categories[c] for c in expected_classes]


def torchvision_categories():
    import torchvision

    return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.mark.parametrize("family,truncation", [("biggan", 0.5), ("stylegan2", 0.5), ("dcgan", 0.7), ("vae", 0.3)])
def test_truncation_equals_the_in_process_image(stub, models, family, truncation):
    responses = generate(stub, family, num_images=2, seed=5, truncation=truncation, output=FLOAT32)
    for r in responses:
        torch.testing.assert_close(
            im.tensor_of(r), expected(models, family, r.seed, truncation=truncation)[0], atol=ATOL[family], rtol=0
        )
    plain = generate(stub, family, num_images=1, seed=5, output=FLOAT32)[0]
    assert not torch.equal(im.tensor_of(plain), im.tensor_of(responses[0]))


@pytest.mark.parametrize("family", ["dcgan", "stylegan2", "vae"])
def test_explicit_latents_are_used_as_given(stub, models, family):
    size = {"dcgan": 16, "stylegan2": 16, "vae": 8}[family]
    latents = torch.linspace(-1.5, 1.5, 2 * size)
    responses = generate(stub, family, num_images=2, seed=60, latent=latents.tolist(), output=FLOAT32)
    for i, r in enumerate(responses):
        image = expected(models, family, 60 + i, latent=latents[i * size : (i + 1) * size])[0]
        torch.testing.assert_close(im.tensor_of(r), image, atol=ATOL[family], rtol=0)


def test_interpolation_ends_at_the_seeds_images_and_slerps_between(stub, models):
    request = pb.InterpolateRequest(
        model="dcgan",
        num_images=5,
        start=pb.InterpolationEndpoint(seed=21),
        end=pb.InterpolationEndpoint(seed=22),
        output=FLOAT32,
    )
    frames = list(stub.Interpolate(request, timeout=60))
    assert [f.index for f in frames] == list(range(5))
    assert [f.t for f in frames] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert torch.equal(
        im.tensor_of(frames[0]), im.tensor_of(generate(stub, "dcgan", num_images=1, seed=21, output=FLOAT32)[0])
    )
    assert torch.equal(
        im.tensor_of(frames[-1]), im.tensor_of(generate(stub, "dcgan", num_images=1, seed=22, output=FLOAT32)[0])
    )
    a = torch.randn(16, generator=torch.Generator().manual_seed(21)).double()
    b = torch.randn(16, generator=torch.Generator().manual_seed(22)).double()
    omega = torch.arccos(torch.dot(a, b) / (a.norm() * b.norm()))
    mid = ((torch.sin(0.5 * omega) * a + torch.sin(0.5 * omega) * b) / torch.sin(omega)).float()
    torch.testing.assert_close(im.tensor_of(frames[2]), expected(models, "dcgan", 21, latent=mid)[0], atol=1e-6, rtol=0)


def test_interpolation_between_latents_linearly(stub, models):
    a, b = torch.zeros(16), torch.ones(16)
    request = pb.InterpolateRequest(
        model="dcgan",
        num_images=3,
        method=pb.INTERPOLATION_METHOD_LINEAR,
        seed=5,
        start=pb.InterpolationEndpoint(latent=pb.LatentVector(values=a.tolist())),
        end=pb.InterpolationEndpoint(latent=pb.LatentVector(values=b.tolist())),
        output=FLOAT32,
    )
    frames = list(stub.Interpolate(request, timeout=60))
    assert all(f.seed == 5 for f in frames)
    torch.testing.assert_close(
        im.tensor_of(frames[1]), expected(models, "dcgan", 5, latent=torch.full((16,), 0.5))[0], atol=1e-6, rtol=0
    )


def test_jpeg_of_the_requested_quality(stub, models):
    from PIL import Image

    low = generate(
        stub, "dcgan", num_images=1, seed=3, output=pb.ImageOutput(format=pb.IMAGE_FORMAT_JPEG, jpeg_quality=20)
    )[0]
    high = generate(
        stub, "dcgan", num_images=1, seed=3, output=pb.ImageOutput(format=pb.IMAGE_FORMAT_JPEG, jpeg_quality=95)
    )[0]
    for r in (low, high):
        image = Image.open(io.BytesIO(r.image.encoded))
        assert image.format == "JPEG" and image.size == (64, 64) and r.image.format == pb.IMAGE_FORMAT_JPEG
    assert len(low.image.encoded) < len(high.image.encoded)
    # The in-process image's pixels, encoded here by the same Pillow at the same quality: the same file.
    pixels = im.quantize(expected(models, "dcgan", 3)[0]).permute(1, 2, 0).numpy()
    for r, quality in ((low, 20), (high, 95)):
        local = io.BytesIO()
        Image.fromarray(pixels).save(local, format="JPEG", quality=quality)
        assert r.image.encoded == local.getvalue()


def test_model_info_reports_the_generator(server):
    from modelplex_client import Client

    with Client(server.address) as client:
        info = client.get_model("biggan")
    task_info = pb.ImageGenerationInfo()
    assert info.task == "image_generation" and info.task_info.Unpack(task_info)
    assert (task_info.latent_size, task_info.channels, task_info.height, task_info.width) == (8, 3, 128, 128)
    assert task_info.num_classes == 1000 and task_info.family == "biggan"
    assert len(task_info.class_names) == 1000 and task_info.class_names[1] == "goldfish"
    assert math.isclose(task_info.default_truncation, 0.4, rel_tol=1e-6)
    assert task_info.max_images_per_request == 64
