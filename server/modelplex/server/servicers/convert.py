"""Conversions between protobuf messages and the core's types, shared by servicers."""

from __future__ import annotations

import asyncio

from grpc import aio

from modelplex.errors import InvalidInputError
from modelplex.tasks import EncodedImage, RawTensor
from modelplex_client.pb import common_pb2, image_classification_pb2

__all__ = ["deadline_of", "image_from_proto", "tensor_dtype"]

_DTYPES = {
    common_pb2.FLOAT32: "float32",
    common_pb2.FLOAT16: "float16",
    common_pb2.BFLOAT16: "bfloat16",
    common_pb2.UINT8: "uint8",
    common_pb2.INT64: "int64",
}


def tensor_dtype(value: int) -> str:
    try:
        return _DTYPES[value]  # type: ignore[index]
    except KeyError:
        raise InvalidInputError(f"tensor dtype is unset or unknown ({value}); use FLOAT32") from None


def image_from_proto(index: int, image: image_classification_pb2.Image) -> EncodedImage | RawTensor:
    kind = image.WhichOneof("content")
    if kind == "encoded":
        return EncodedImage(image.encoded)
    if kind == "tensor":
        t = image.tensor
        return RawTensor(tuple(t.shape), tensor_dtype(t.dtype), t.data)
    raise InvalidInputError(f"image {index} has neither `encoded` nor `tensor` set")


def deadline_of(context: aio.ServicerContext) -> float | None:
    """The call's deadline on the event loop's clock, or None when it has none."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining
