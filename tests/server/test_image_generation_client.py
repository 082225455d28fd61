"""The image-generation calls of the sync and asyncio clients, and ``modelplex imagine``, against a
real server: PNGs the command writes decode to the saved generator's pixels, run in process."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

import imagegen_models as im
from modelplex.testing import running_server
from modelplex_client import AsyncClient, Client, ServerError
from modelplex_client._image_generation_calls import generate_images_request
from modelplex_client.cli import main

ImageClient, AsyncImageClient = Client, AsyncClient  # both clients carry the image generation calls


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagegen-client")
    dcgan_path, dcgan = im.save_dcgan(root / "dcgan")
    biggan_dir, biggan = im.save_biggan(root / "biggan")
    return {"dcgan": (dcgan_path, dcgan), "biggan": (biggan_dir, biggan)}


@pytest.fixture(scope="module")
def server(nets):
    models = [
        {
            "name": "dcgan",
            "spec": "dcgan",
            "weights": str(nets["dcgan"][0]),
            "devices": ["cpu"],
            "settings": {"nz": 16, "ngf": 8},
            "max_batch_size": 3,
            "pad_batches": True,
        },
        {"name": "biggan", "spec": "biggan-deep-128", "weights": str(nets["biggan"][0]), "devices": ["cpu"]},
    ]
    with running_server({"models": models}) as s:
        yield s


def imagine(server, *argv: str) -> None:
    """``modelplex imagine ...`` through the command's entry point."""
    assert main(["imagine", "--server", server.address, "--timeout", "60", *argv]) == 0


def test_imagine_writes_pngs_of_the_in_process_pixels_and_a_grid(server, nets, tmp_path, capsys):
    from PIL import Image

    imagine(server, "--model", "dcgan", "-n", "5", "--seed", "1", "-o", str(tmp_path / "out"))
    files = sorted((tmp_path / "out").glob("image_*.png"))
    assert [f.name for f in files] == [f"image_{i:03d}_seed{1 + i}.png" for i in range(5)]
    for i, f in enumerate(files):
        expected = im.quantize(im.reference("dcgan", nets["dcgan"][1], 1 + i)[0])
        assert torch.equal(im.png_pixels(f.read_bytes()), expected)
    grid = Image.open(tmp_path / "out" / "grid.png")
    assert grid.size == (3 * 64, 2 * 64)  # 5 images: 3 columns, 2 rows
    assert torch.equal(
        im.png_pixels((tmp_path / "out" / "grid.png").read_bytes())[:, 64:128, 64:128],
        im.png_pixels(files[4].read_bytes()),
    )
    assert str(files[0]) in capsys.readouterr().out


def test_imagine_with_a_class_name_as_json(server, tmp_path, capsys):
    imagine(
        server,
        "--model",
        "biggan",
        "-n",
        "2",
        "--seed",
        "4",
        "--class",
        "goldfish",
        "--json",
        "--format",
        "jpeg",
        "-o",
        str(tmp_path),
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["index"], r["seed"], r["class_index"], r["class_name"]) for r in records] == [
        (0, 4, 1, "goldfish"),
        (1, 5, 1, "goldfish"),
    ]
    assert all(r["path"].endswith(".jpg") for r in records)


def test_sync_and_async_clients_stream_the_same_images(server):
    with ImageClient(server.address, timeout=60) as client:
        sync = list(client.generate_images(model="dcgan", num_images=4, seed=9, format="float32"))
        frames = list(client.interpolate_images(9, 12, model="dcgan", num_images=3, format="float32"))
        with pytest.raises(ServerError) as info:
            list(client.generate_images(model="dcgan", num_images=1, image_class="goldfish"))
        assert info.value.code.name == "INVALID_ARGUMENT"

    async def collect():
        async with AsyncImageClient(server.address, timeout=60) as client:
            return [r async for r in client.generate_images(model="dcgan", num_images=4, seed=9, format="float32")]

    streamed = asyncio.run(collect())
    assert [r.seed for r in sync] == [r.seed for r in streamed] == [9, 10, 11, 12]
    for a, b in zip(sync, streamed, strict=True):
        assert a.image == b.image
    assert frames[0].image == sync[0].image and frames[-1].image == sync[3].image


def test_request_helpers():
    request = generate_images_request(
        model="m",
        num_images=2,
        seed=3,
        image_class=7,
        truncation=0.5,
        latents=[[0.0, 1.0], [2.0, 3.0]],
        format="jpeg",
        jpeg_quality=80,
    )
    assert request.class_index == 7 and request.HasField("seed") and request.HasField("truncation")
    assert list(request.latent) == [0.0, 1.0, 2.0, 3.0] and request.output.jpeg_quality == 80
    assert generate_images_request(model="m", image_class="tench").class_name == "tench"
    assert not generate_images_request(model="m").HasField("seed")
    with pytest.raises(ValueError, match="format must be one of png, jpeg, float32"):
        generate_images_request(model="m", format="gif")
