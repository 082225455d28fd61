"""Generated images to PNG, JPEG or raw FLOAT32 bytes (on the instance's thread)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ImageFormat", "OutputOptions", "encode", "encodable"]


class ImageFormat(StrEnum):
    """How an image is returned."""

    PNG = "png"
    JPEG = "jpeg"
    FLOAT32 = "float32"


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """A request's output format."""

    format: ImageFormat = ImageFormat.PNG
    jpeg_quality: int = 90


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def encodable(channels: int, fmt: ImageFormat) -> str | None:
    """Why images of ``channels`` channels cannot be returned as ``fmt``; None if they can."""
    if fmt is ImageFormat.FLOAT32:
        return None
    if channels not in _MODES:
        return f"this model's images have {channels} channels, which {fmt.name} cannot hold: ask for FLOAT32"
    if fmt is ImageFormat.JPEG and channels == 4:
        return "this model's images have 4 channels (RGBA), which JPEG cannot hold: ask for PNG or FLOAT32"
    return None


def encode(image: Any, options: OutputOptions) -> bytes:
    """``image``: a float32 CPU tensor (channels, height, width) in [0, 1]. PNG and JPEG
    hold round(255 * value); FLOAT32 is the tensor's bytes, row-major little-endian."""
    import torch

    if options.format is ImageFormat.FLOAT32:
        return image.contiguous().numpy().astype("<f4", copy=False).tobytes()
    from PIL import Image

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    channels = pixels.shape[2]
    pil = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)  # L, RGB or RGBA by shape
    buf = io.BytesIO()
    if options.format is ImageFormat.JPEG:
        pil.save(buf, format="JPEG", quality=options.jpeg_quality)
    else:
        pil.save(buf, format="PNG")
    return buf.getvalue()
