"""The vision plugin's preprocessing: decoding client images and raw tensors."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
import torchvision.models as tvm
from PIL import Image

from modelplex import EncodedImage, InvalidInputError, LoadContext, RawTensor, WeightsChoice, WeightsSource
from modelplex_vision.plugin import build_specs
from modelplex_vision.settings import VisionSettings

SPECS = {spec.name: spec for spec in build_specs()}


def make_classifier(arch: str, variant: str | None = None) -> Any:
    """The plugin's classifier for ``arch`` with random weights, not loaded (preprocess needs no model)."""
    spec = SPECS[arch]
    ctx = LoadContext(
        model_name=arch,
        spec=spec,
        variant=spec.variant(variant),
        weights=WeightsChoice(WeightsSource.RANDOM),
        device="cpu",
        settings=VisionSettings(),
    )
    return spec.factory(ctx)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_image(mode: str = "RGB", size: tuple[int, int] = (320, 240)) -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    channels = len(mode)
    pixels = torch.randint(0, 256, (size[1], size[0], channels), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.squeeze(-1).numpy(), mode=mode)


@pytest.mark.parametrize(
    ("arch", "variant"),
    [("resnet50", "IMAGENET1K_V2"), ("inception_v3", None), ("vgg16", "IMAGENET1K_FEATURES")],
)
@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB")],
)
def test_encoded_image_is_preprocessed_like_the_weights_preset(
    arch: str, variant: str | None, fmt: str, mode: str
) -> None:
    model = make_classifier(arch, variant)
    data = encode(noise_image(mode), fmt)
    weights = tvm.get_weight(SPECS[arch].variant(variant).weights)
    expected = weights.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))

    got = model.preprocess(EncodedImage(data))

    assert got.shape == model.input_shape == expected.shape
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_exif_orientation_is_applied() -> None:
    image = noise_image(size=(200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: displayed portrait
    data = encode(image, "JPEG", exif=exif)
    upright = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    expected = tvm.ResNet18_Weights.IMAGENET1K_V1.transforms()(upright)
    assert torch.equal(make_classifier("resnet18").preprocess(EncodedImage(data)), expected)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"definitely not an image",
        encode(noise_image(), "PNG")[:200],
        encode(noise_image(), "JPEG")[:300],
        encode(noise_image(), "GIF"),
    ],
    ids=["empty", "garbage", "truncated-png", "truncated-jpeg", "gif"],
)
def test_undecodable_image_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="cannot decode image") as info:
        make_classifier("resnet18").preprocess(EncodedImage(data))
    assert "accepted formats: JPEG, PNG, WebP, BMP" in str(info.value)


def test_raw_tensor_is_taken_as_is() -> None:
    tensor = torch.rand(3, 299, 299)
    raw = RawTensor(shape=(3, 299, 299), dtype="float32", data=tensor.numpy().tobytes())
    assert torch.equal(make_classifier("inception_v3").preprocess(raw), tensor)


def test_raw_tensor_of_another_shape_is_invalid_input() -> None:
    raw = RawTensor(shape=(3, 2, 2), dtype="float32", data=bytes(48))
    with pytest.raises(InvalidInputError, match="shape"):
        make_classifier("resnet18").preprocess(raw)
