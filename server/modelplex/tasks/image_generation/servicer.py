"""modelplex.v1.ImageGeneration over the image-generation runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from grpc import aio

from modelplex.errors import InvalidInputError
from modelplex.server.grpc_errors import deadline_of, grpc_stream_errors
from modelplex.taskdef import RuntimeLookup
from modelplex.tasks.image_generation.encode import ImageFormat, OutputOptions
from modelplex.tasks.image_generation.runtime import (
    Endpoint,
    GeneratedImage,
    GenerateParams,
    ImageGenerationRuntime,
    InterpolateParams,
)
from modelplex_client.pb import common_pb2
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc

__all__ = ["ImageGenerationServicer", "add_servicers"]

_FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: ImageFormat.PNG,
    pb.IMAGE_FORMAT_PNG: ImageFormat.PNG,
    pb.IMAGE_FORMAT_JPEG: ImageFormat.JPEG,
    pb.IMAGE_FORMAT_FLOAT32: ImageFormat.FLOAT32,
}
_FORMAT_ENUM = {ImageFormat.PNG: pb.IMAGE_FORMAT_PNG, ImageFormat.JPEG: pb.IMAGE_FORMAT_JPEG}
_METHODS = {
    pb.INTERPOLATION_METHOD_UNSPECIFIED: "slerp",
    pb.INTERPOLATION_METHOD_SLERP: "slerp",
    pb.INTERPOLATION_METHOD_LINEAR: "linear",
}


def _output(message: pb.ImageOutput) -> OutputOptions:
    fmt = _FORMATS.get(message.format)  # type: ignore[call-overload]
    if fmt is None:
        raise InvalidInputError(f"output.format {message.format} is not an ImageFormat this server knows")
    return OutputOptions(fmt, message.jpeg_quality or 90)


def _conditioning(request: pb.ImageGenerationGenerateRequest | pb.InterpolateRequest) -> tuple[int | None, str | None]:
    which = request.WhichOneof("conditioning")
    if which == "class_index":
        return request.class_index, None
    if which == "class_name":
        return None, request.class_name
    return None, None


def _endpoint(message: pb.InterpolationEndpoint) -> Endpoint:
    which = message.WhichOneof("point")
    if which == "seed":
        return Endpoint(seed=message.seed)
    if which == "latent":
        return Endpoint(latent=tuple(message.latent.values))
    return Endpoint()


def _image(image: GeneratedImage) -> pb.GeneratedImage:
    message = pb.GeneratedImage(width=image.width, height=image.height, channels=image.channels)
    if image.format is ImageFormat.FLOAT32:
        message.format = pb.IMAGE_FORMAT_FLOAT32
        message.tensor.shape.extend((image.channels, image.height, image.width))
        message.tensor.dtype = common_pb2.DATA_TYPE_FLOAT32
        message.tensor.data = image.data
    else:
        message.format = _FORMAT_ENUM[image.format]
        message.encoded = image.data
    return message


class ImageGenerationServicer(pb_grpc.ImageGenerationServicer):
    def __init__(self, runtimes: RuntimeLookup) -> None:
        self._runtimes = runtimes

    def _runtime(self, model: str) -> ImageGenerationRuntime:
        return cast(ImageGenerationRuntime, self._runtimes(model))

    @grpc_stream_errors
    async def Generate(
        self, request: pb.ImageGenerationGenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.ImageGenerationGenerateResponse]:
        class_index, class_name = _conditioning(request)
        params = GenerateParams(
            num_images=request.num_images,
            seed=request.seed if request.HasField("seed") else None,
            class_index=class_index,
            class_name=class_name,
            truncation=request.truncation if request.HasField("truncation") else None,
            latents=request.latent,
            output=_output(request.output),
        )
        images = self._runtime(request.model).generate(params, deadline_of(context))
        async for image in images:
            yield pb.ImageGenerationGenerateResponse(
                request_id=request.request_id,
                model=request.model,
                index=image.index,
                seed=image.seed,
                class_index=-1 if image.class_index is None else image.class_index,
                class_name=image.class_name,
                image=_image(image),
            )

    @grpc_stream_errors
    async def Interpolate(
        self, request: pb.InterpolateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.InterpolateResponse]:
        class_index, class_name = _conditioning(request)
        method = _METHODS.get(request.method)  # type: ignore[call-overload]
        if method is None:
            raise InvalidInputError(f"method {request.method} is not an InterpolationMethod this server knows")
        params = InterpolateParams(
            num_images=request.num_images,
            start=_endpoint(request.start),
            end=_endpoint(request.end),
            method=method,
            seed=request.seed if request.HasField("seed") else None,
            class_index=class_index,
            class_name=class_name,
            truncation=request.truncation if request.HasField("truncation") else None,
            output=_output(request.output),
        )
        frames = self._runtime(request.model).interpolate(params, deadline_of(context))
        async for frame in frames:
            yield pb.InterpolateResponse(
                request_id=request.request_id,
                model=request.model,
                index=frame.index,
                t=frame.t or 0.0,
                seed=frame.seed,
                class_index=-1 if frame.class_index is None else frame.class_index,
                class_name=frame.class_name,
                image=_image(frame),
            )


def add_servicers(runtimes: RuntimeLookup, server: aio.Server) -> None:
    pb_grpc.add_ImageGenerationServicer_to_server(ImageGenerationServicer(runtimes), server)
