"""Image generation on the shared dynamic-batching runtime.

A request is checked on the event loop, cut into pieces of at most ``max_batch_size``
images, and every piece is queued at once; the instances' threads batch pieces of all
callers together (a piece takes one batch slot per image). The servicer streams a
request's images in index order, each piece as soon as it and the pieces before it are
done. When the caller goes away, its pieces still queued are dropped unrun.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Sequence

from modelplex.errors import InvalidInputError, ModelplexError
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import inference_error
from modelplex.server.runtimes.batched import BatchingRuntime
from modelplex.tasks.image_generation.encode import ImageFormat, OutputOptions, encodable, encode
from modelplex.tasks.image_generation.interface import ImageGenerator, ImageInput
from modelplex.tasks.image_generation.jobs import (
    SEED_MODULUS,
    Endpoint,
    GeneratedImage,
    GenerateParams,
    ImageJob,
    ImageOrder,
    InterpolateParams,
    interpolated_latent,
)
from modelplex.tasks.image_generation.settings import ImageGenerationSettings
from modelplex_client.pb import image_generation_pb2 as pb

log = logging.getLogger(__name__)

__all__ = [
    "Endpoint",
    "GenerateParams",
    "GeneratedImage",
    "ImageGenerationRuntime",
    "ImageJob",
    "ImageOrder",
    "InterpolateParams",
]


class ImageGenerationRuntime(BatchingRuntime[ImageGenerationSettings, ImageJob, list[GeneratedImage]]):
    """Generate and Interpolate requests, batched by image across callers."""

    def __init__(self, name: str, instances: Sequence[Instance], settings: ImageGenerationSettings) -> None:
        super().__init__(name, instances, settings)
        first: ImageGenerator = self.first_model()
        self.latent_size = int(first.latent_size)
        self.image_shape = tuple(int(d) for d in first.image_shape)
        self.labels = tuple(first.labels)
        self.default_truncation = float(first.default_truncation)
        self.family = first.family
        self._by_name = {label.strip().lower(): i for i, label in enumerate(self.labels)}

    def info(self) -> pb.ImageGenerationInfo:
        channels, height, width = self.image_shape
        return pb.ImageGenerationInfo(
            latent_size=self.latent_size,
            channels=channels,
            height=height,
            width=width,
            num_classes=len(self.labels),
            default_truncation=self.default_truncation,
            max_images_per_request=self.settings.max_images_per_request,
            family=self.family,
            class_names=self.labels,
        )

    # -- on the event loop: checks, then the pieces ----------------------------------------

    def _check_common(
        self, num_images: int, minimum: int, class_index: int | None, class_name: str | None, truncation: float | None
    ) -> tuple[int | None, float]:
        limit = self.settings.max_images_per_request
        if not minimum <= num_images <= limit:
            raise InvalidInputError(
                f"num_images must be between {minimum} and {limit} for this model, got {num_images}"
            )
        if truncation is None:
            truncation = self.default_truncation
        elif not (math.isfinite(truncation) and 0 < truncation <= 1):
            raise InvalidInputError(f"truncation must be in (0, 1], got {truncation}")
        return self._class(class_index, class_name), float(truncation)

    def _class(self, index: int | None, name: str | None) -> int | None:
        if index is None and name is None:
            return None
        if not self.labels:
            raise InvalidInputError(f"model {self.name!r} is unconditional: it takes no class_index or class_name")
        if name is not None:
            found = self._by_name.get(name.strip().lower())
            if found is None:
                raise InvalidInputError(
                    f"model {self.name!r} has no class named {name!r}; its classes are e.g. "
                    f"{', '.join(repr(label) for label in self.labels[:5])} (ModelInfo's task_info lists them all)"
                )
            return found
        assert index is not None
        if not 0 <= index < len(self.labels):
            raise InvalidInputError(f"class_index must be between 0 and {len(self.labels) - 1}, got {index}")
        return index

    def _check_output(self, output: OutputOptions) -> None:
        if output.format is ImageFormat.JPEG and not 1 <= output.jpeg_quality <= 100:
            raise InvalidInputError(f"jpeg_quality must be between 1 and 100 (0 means 90), got {output.jpeg_quality}")
        why = encodable(self.image_shape[0], output.format)
        if why is not None:
            raise InvalidInputError(why)

    def _check_latent(self, values: Sequence[float], what: str) -> tuple[float, ...]:
        if len(values) != self.latent_size:
            raise InvalidInputError(f"{what} has {len(values)} values; this model's latent_size is {self.latent_size}")
        if not all(math.isfinite(v) for v in values):
            raise InvalidInputError(f"{what} holds a NaN or infinite value")
        return tuple(values)

    def generate(self, params: GenerateParams, deadline: float | None = None) -> AsyncIterator[GeneratedImage]:
        """Check ``params``, queue its pieces, and return the images as they are ready."""
        class_index, truncation = self._check_common(
            params.num_images, 1, params.class_index, params.class_name, params.truncation
        )
        self._check_output(params.output)
        n, size = params.num_images, self.latent_size
        latents: list[tuple[float, ...] | None] = [None] * n
        if params.latents:
            if len(params.latents) != n * size:
                got = len(params.latents)
                raise InvalidInputError(
                    f"latent has {got} values; num_images {n} x latent_size {size} = {n * size} expected"
                )
            latents = [self._check_latent(params.latents[i * size : (i + 1) * size], f"latent {i}") for i in range(n)]
        seed = _seed(params.seed)
        orders = [ImageOrder(i, (seed + i) % SEED_MODULUS, latents[i]) for i in range(n)]
        return self._run(orders, class_index, truncation, params.output, None, deadline)

    def interpolate(self, params: InterpolateParams, deadline: float | None = None) -> AsyncIterator[GeneratedImage]:
        """Check ``params``, queue its frames, and return them as they are ready."""
        class_index, truncation = self._check_common(
            params.num_images, 2, params.class_index, params.class_name, params.truncation
        )
        self._check_output(params.output)
        ends = []
        for what, end in (("start", params.start), ("end", params.end)):
            if end.latent is not None:
                ends.append(Endpoint(latent=self._check_latent(end.latent, f"{what}.latent")))
            elif end.seed is not None:
                ends.append(Endpoint(seed=end.seed % SEED_MODULUS))
            else:
                raise InvalidInputError(f"{what} has neither a seed nor a latent")
        if params.method not in ("slerp", "linear"):
            raise InvalidInputError(f"method must be slerp or linear, got {params.method!r}")
        seed = params.seed if params.seed is not None else (ends[0].seed if ends[0].seed is not None else 0)
        n = params.num_images
        orders = [ImageOrder(i, seed % SEED_MODULUS, t=i / (n - 1)) for i in range(n)]
        return self._run(orders, class_index, truncation, params.output, (ends[0], ends[1], params.method), deadline)

    def _run(
        self,
        orders: list[ImageOrder],
        class_index: int | None,
        truncation: float,
        output: OutputOptions,
        interpolation: tuple[Endpoint, Endpoint, str] | None,
        deadline: float | None,
    ) -> AsyncIterator[GeneratedImage]:
        step = self.settings.max_batch_size
        jobs = [
            ImageJob(tuple(orders[i : i + step]), class_index, truncation, output, interpolation)
            for i in range(0, len(orders), step)
        ]
        futures = self._queue_all(jobs, deadline)  # before the first await: all or nothing
        return _in_order(futures)

    def _queue_all(self, jobs: list[ImageJob], deadline: float | None) -> list[asyncio.Future[list[GeneratedImage]]]:
        futures: list[asyncio.Future[list[GeneratedImage]]] = []
        try:
            for job in jobs:
                futures.append(self.enqueue(job, len(job.images), deadline))
        except BaseException:
            for f in futures:
                f.cancel()  # the worker skips them
            raise
        return futures

    # -- on the instance's thread ----------------------------------------------------------

    def run_batch(self, model: ImageGenerator, jobs: Sequence[ImageJob]) -> list[list[GeneratedImage] | BaseException]:
        """Build every image's input (a failure fails only its request), generate them
        together in chunks of ``max_batch_size`` of one truncation each, then encode each
        request's images."""
        import torch

        out: list[list[GeneratedImage] | BaseException] = []
        inputs: list[ImageInput] = []
        spans: list[tuple[int, list[int | None]] | None] = []
        for job in jobs:
            try:
                built = [self._input(model, job, order) for order in job.images]
            except ModelplexError as e:
                out.append(e)
                spans.append(None)
                continue
            except Exception as e:
                out.append(inference_error(self.name, e))
                spans.append(None)
                continue
            spans.append((len(inputs), [b.class_index for b in built]))
            inputs.extend(built)
            out.append([])
        if not inputs:
            return out
        images: list[object] = [None] * len(inputs)
        step = self.settings.max_batch_size
        by_truncation: dict[float, list[int]] = {}
        for k, item in enumerate(inputs):
            by_truncation.setdefault(item.truncation, []).append(k)
        with torch.inference_mode():
            for rows in by_truncation.values():
                for start in range(0, len(rows), step):
                    part = rows[start : start + step]
                    for k, image in zip(part, self._generate(model, [inputs[k] for k in part]), strict=True):
                        images[k] = image
        for j, (job, span) in enumerate(zip(jobs, spans, strict=True)):
            if span is not None:
                out[j] = self._finish(job, images[span[0] : span[0] + len(job.images)], span[1])
        return out

    def _generate(self, model: ImageGenerator, chunk: list[ImageInput]) -> list[object]:
        import torch

        n = len(chunk)
        if self.settings.pad_batches and n < self.settings.max_batch_size:
            # Same shapes, same kernels: an image's bits no longer depend on its batch.
            first = chunk[0]
            filler = ImageInput(first.latent, first.class_index, first.truncation, torch.Generator().manual_seed(0))
            chunk = chunk + [filler] * (self.settings.max_batch_size - n)
        got = model.generate(chunk)
        if tuple(got.shape) != (len(chunk), *self.image_shape):
            raise RuntimeError(
                f"generate() returned shape {tuple(got.shape)} for {len(chunk)} images of {self.image_shape}"
            )
        images = got[:n].detach().to("cpu", torch.float32)
        if not bool(torch.isfinite(images).all()):
            raise RuntimeError(f"generate() returned NaN or infinite values for {n} images")
        # The API promises values in [0, 1]: a generator's rounding past either end is clipped.
        return list(images.clamp_(0.0, 1.0).unbind(0))

    def _input(self, model: ImageGenerator, job: ImageJob, order: ImageOrder) -> ImageInput:
        import torch

        generator = torch.Generator().manual_seed(order.seed)
        # The latent is always drawn first, even when replaced, so that a seed's class and
        # noise are the same with or without an explicit latent (and in interpolation frames).
        latent = model.sample_latent(generator, job.truncation)
        if order.latent is not None:
            latent = torch.tensor(order.latent, dtype=torch.float32)
        elif job.interpolation is not None:
            assert order.t is not None
            latent = interpolated_latent(model, job, order.t)
        class_index = job.class_index
        if self.labels and class_index is None:
            class_index = int(torch.randint(len(self.labels), (1,), generator=generator))
        return ImageInput(latent.to(torch.float32).reshape(self.latent_size), class_index, job.truncation, generator)

    def _finish(self, job: ImageJob, images: Sequence[object], classes: list[int | None]) -> list[GeneratedImage]:
        channels, height, width = self.image_shape
        done = []
        for order, image, class_index in zip(job.images, images, classes, strict=True):
            done.append(
                GeneratedImage(
                    index=order.index,
                    seed=order.seed,
                    class_index=class_index,
                    class_name=self.labels[class_index] if class_index is not None else "",
                    format=job.output.format,
                    channels=channels,
                    height=height,
                    width=width,
                    data=encode(image, job.output),
                    t=order.t,
                )
            )
        return done


def _seed(seed: int | None) -> int:
    # 63 bits: every client language can hold the seed it gets back.
    return random.getrandbits(63) if seed is None else seed % SEED_MODULUS


async def _in_order(futures: list[asyncio.Future[list[GeneratedImage]]]) -> AsyncIterator[GeneratedImage]:
    """The images of the pieces, in order; leaving early drops the pieces still queued."""
    try:
        for future in futures:
            for image in await future:
                yield image
    finally:
        for future in futures:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning for a piece left unread
            future.cancel()
