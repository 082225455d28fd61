"""Decoding the images clients send."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from modelplex import InvalidInputError

__all__ = ["ACCEPTED_FORMATS", "decode_image"]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
"""PIL format names of the encodings ``decode_image`` accepts."""

_ACCEPTED = "accepted formats: JPEG, PNG, WebP, BMP"


def decode_image(data: bytes) -> Image.Image:
    """Decode a JPEG, PNG, WebP or BMP file's bytes into an RGB image, turned upright by
    its EXIF orientation (a phone photo is classified the way it is displayed)."""
    if not data:
        raise InvalidInputError(f"cannot decode image: it is empty (0 bytes); {_ACCEPTED}")
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
    except Exception as e:  # PIL's decoders raise many types on malformed data
        raise InvalidInputError(f"cannot decode image: {e}; {_ACCEPTED}") from e
