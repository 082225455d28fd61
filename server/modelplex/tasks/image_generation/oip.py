"""Image generation over the Open Inference Protocol: the task's tensors (docs/oip.md).

Inputs, all optional, each as Generate's field of the same name:

- ``seed`` INT64 ``[1]``: image *i* gets seed + *i*; a negative value is taken modulo 2^64
  (the same 64 bits as the typed API's uint64); absent, the server draws one;
- ``num_images`` INT64 ``[1]``: absent, the rows of ``latent``, or 1;
- ``class_index`` INT64 ``[1]`` or ``class_name`` BYTES ``[1]`` (UTF-8), not both;
- ``truncation`` FP32 ``[1]``;
- ``latent`` FP32 ``[N, latent_size]``: the latents to use instead of sampled ones.

Outputs: ``images`` FP32 ``[N, C, H, W]`` in [0, 1], ``seeds`` INT64 ``[N]`` (each image's
seed, as the same 64 bits), ``class_indices`` INT64 ``[N]`` (-1 for an unconditional model).
ModelInfer answers with every image; ModelStreamInfer sends one response per image as it is
ready (decoupled: the last carries ``triton_final_response``). The request reaches the same
runtime call as Generate, so it is batched with typed requests and gives the same images.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import OipMapping, OipMetadata, Outputs, Parameter, Streamed, TensorSpec
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.tasks.image_generation.encode import ImageFormat, OutputOptions
from modelplex.tasks.image_generation.jobs import SEED_MODULUS, GeneratedImage, GenerateParams
from modelplex.tasks.image_generation.runtime import ImageGenerationRuntime

__all__ = ["ImageGenerationOip"]

_FLOAT32 = OutputOptions(ImageFormat.FLOAT32)


class ImageGenerationOip(OipMapping):
    """Seeds, classes, truncation or latents in; FLOAT32 images out, one response each when streamed."""

    decoupled = True

    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        generator = cast(ImageGenerationRuntime, runtime)
        return OipMetadata(
            inputs=(
                TensorSpec("seed", "INT64", (1,), optional=True, description="image i gets seed + i; absent: drawn"),
                TensorSpec("num_images", "INT64", (1,), optional=True, description="absent: latent's rows, or 1"),
                TensorSpec("class_index", "INT64", (1,), optional=True, description="class-conditional models"),
                TensorSpec("class_name", "BYTES", (1,), optional=True, description="class-conditional models"),
                TensorSpec("truncation", "FP32", (1,), optional=True, description="in (0, 1]"),
                TensorSpec(
                    "latent", "FP32", (-1, generator.latent_size), optional=True, description="latents to use as given"
                ),
            ),
            outputs=(
                TensorSpec("images", "FP32", (-1, *generator.image_shape), description="values in [0, 1]"),
                TensorSpec("seeds", "INT64", (-1,), description="each image's seed"),
                TensorSpec("class_indices", "INT64", (-1,), description="-1 for an unconditional model"),
            ),
        )

    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        images = cast(ImageGenerationRuntime, runtime).generate(_params(inputs), deadline)
        return _outputs([image async for image in images])

    async def stream(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> AsyncIterator[Streamed]:
        params = _params(inputs)
        images = cast(ImageGenerationRuntime, runtime).generate(params, deadline)
        try:
            async for image in images:
                yield Streamed(_outputs([image]), final=image.index == params.num_images - 1)
        finally:
            await cast(Any, images).aclose()  # drops the pieces still queued when the client left


def _scalar(inputs: Mapping[str, np.ndarray], name: str) -> Any:
    array = inputs.get(name)
    return None if array is None else array.reshape(-1)[0].item()


def _params(inputs: Mapping[str, np.ndarray]) -> GenerateParams:
    latent = inputs.get("latent")
    num_images = _scalar(inputs, "num_images")
    if num_images is None:
        num_images = 1 if latent is None else latent.shape[0]
    class_index, class_name = _scalar(inputs, "class_index"), inputs.get("class_name")
    if class_index is not None and class_name is not None:
        raise InvalidInputError("send at most one of the inputs 'class_index' and 'class_name'")
    name = None
    if class_name is not None:
        try:
            name = bytes(class_name.reshape(-1)[0]).decode()
        except UnicodeDecodeError:
            raise InvalidInputError("input 'class_name' is not valid UTF-8") from None
    seed = _scalar(inputs, "seed")
    return GenerateParams(
        num_images=int(num_images),
        seed=None if seed is None else int(seed) % SEED_MODULUS,
        class_index=class_index,
        class_name=name,
        truncation=_scalar(inputs, "truncation"),
        latents=() if latent is None else [float(v) for v in latent.reshape(-1)],
        output=_FLOAT32,
    )


def _outputs(images: Sequence[GeneratedImage]) -> dict[str, np.ndarray]:
    pixels = [np.frombuffer(i.data, dtype="<f4").reshape(i.channels, i.height, i.width) for i in images]
    seeds = [i.seed - SEED_MODULUS if i.seed >= SEED_MODULUS // 2 else i.seed for i in images]
    return {
        "images": np.stack(pixels),
        "seeds": np.array(seeds, dtype=np.int64),
        "class_indices": np.array([-1 if i.class_index is None else i.class_index for i in images], dtype=np.int64),
    }
