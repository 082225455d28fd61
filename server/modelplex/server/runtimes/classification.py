"""Image classification with dynamic batching over the model's instances."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelplex.errors import InvalidInputError, ModelNotReadyError, ModelplexError
from modelplex.server.batching import BatchQueue, Pending, resolve
from modelplex.server.config import ModelConfig
from modelplex.server.instance import Instance
from modelplex.server.runtimes.base import TaskRuntime, inference_error
from modelplex.tasks import ClassScore, EncodedImage, ImageClassifier, RawTensor

log = logging.getLogger(__name__)

__all__ = ["ClassificationRuntime", "ClassifyJob"]

_ITEMSIZE = {"float32": 4}


@dataclass(frozen=True, slots=True)
class ClassifyJob:
    images: Sequence[EncodedImage | RawTensor]
    top_k: int


class ClassificationRuntime(TaskRuntime):
    """Queues Classify requests; each instance's worker takes a batch when free."""

    def __init__(self, name: str, config: ModelConfig, instances: Sequence[Instance]) -> None:
        super().__init__(name, config, instances)
        self._queue: BatchQueue[ClassifyJob] = BatchQueue(
            name, config.max_queue_size, config.max_batch_size, config.max_batch_delay_ms / 1000.0
        )
        self._workers: list[asyncio.Future[None]] = []
        first = instances[0].model
        assert isinstance(first, ImageClassifier), f"{type(first).__name__} is not an ImageClassifier"
        self.input_shape: tuple[int, ...] = tuple(first.input_shape)
        self.num_classes = len(first.labels)

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Each instance's thread runs its batch loop until stop(); load and unload run on the
        # same thread before and after, so the model is never called from two threads.
        self._workers = [inst.start_loop(self._serve, inst, loop) for inst in self.instances]

    async def stop(self) -> None:
        """Stop taking batches; batches already running finish and answer their callers."""
        left = self._queue.close()
        unloaded = ModelNotReadyError(f"model {self.name!r} was unloaded")
        resolve(left, [unloaded] * len(left))
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def validate(self, images: Sequence[EncodedImage | RawTensor], top_k: int) -> int:
        """Check what can be checked on the event loop; return the effective top_k."""
        if not images:
            raise InvalidInputError("images is empty: send at least one image")
        limit = self.config.max_images_per_request
        if len(images) > limit:
            raise InvalidInputError(f"{len(images)} images in one request; this model takes at most {limit}")
        default = min(5, self.num_classes)
        if top_k < 0 or top_k > self.num_classes:
            raise InvalidInputError(f"top_k must be between 1 and {self.num_classes} (0 means {default}), got {top_k}")
        for i, image in enumerate(images):
            if isinstance(image, RawTensor):
                self._check_tensor(i, image)
            elif not image.data:
                raise InvalidInputError(f"image {i} is empty: send the bytes of a JPEG, PNG, WebP or BMP file")
        return top_k or default

    def _check_tensor(self, i: int, t: RawTensor) -> None:
        if t.dtype != "float32":
            raise InvalidInputError(f"image {i}: tensor dtype must be FLOAT32, got {t.dtype.upper()}")
        if tuple(t.shape) != self.input_shape:
            raise InvalidInputError(
                f"image {i}: tensor shape must be {list(self.input_shape)} (channels, height, width), "
                f"got {_shape_text(t.shape)}"
            )
        expected = math.prod(t.shape) * _ITEMSIZE[t.dtype]
        if len(t.data) != expected:
            raise InvalidInputError(
                f"image {i}: tensor data has {len(t.data)} bytes; shape {_shape_text(t.shape)} FLOAT32 needs {expected}"
            )

    async def classify(
        self, images: Sequence[EncodedImage | RawTensor], top_k: int, deadline: float | None = None
    ) -> list[list[ClassScore]]:
        """Classify ``images``; the result is one top-k list per image."""
        k = self.validate(images, top_k)
        future: asyncio.Future[list[list[ClassScore]]] = asyncio.get_running_loop().create_future()
        self._queue.put(Pending(ClassifyJob(images, k), len(images), future, deadline))
        try:
            return await future
        except asyncio.CancelledError:
            future.cancel()  # the worker skips it if it has not started
            raise

    def _serve(self, inst: Instance, loop: asyncio.AbstractEventLoop) -> None:
        """On the instance's thread: take a batch, run it, hand the results to the loop; repeat."""
        model = inst.model
        assert isinstance(model, ImageClassifier)
        while (batch := self._queue.take(loop)) is not None:
            results: Sequence[list[list[ClassScore]] | BaseException]
            inst.busy += 1
            try:
                results = self._run_batch(model, [p.payload for p in batch])
            except ModelplexError as e:  # the plugin refused the whole batch on purpose
                results = [e] * len(batch)
            except BaseException as e:  # the whole batch failed inside the plugin; keep serving
                results = [inference_error(self.name, e)] * len(batch)
            finally:
                inst.busy -= 1
            inst.completed += 1
            loop.call_soon_threadsafe(resolve, batch, results)

    def _run_batch(
        self, model: ImageClassifier, jobs: Sequence[ClassifyJob]
    ) -> list[list[list[ClassScore]] | BaseException]:
        """On the instance's thread: preprocess each request (failing only it), classify all together."""
        out: list[list[list[ClassScore]] | BaseException] = []
        inputs: list[object] = []
        spans: list[tuple[int, int, int] | None] = []
        for job in jobs:
            try:
                xs = [_preprocess(model, i, image) for i, image in enumerate(job.images)]
            except ModelplexError as e:
                out.append(e)
                spans.append(None)
                continue
            except Exception as e:
                out.append(inference_error(self.name, e))
                spans.append(None)
                continue
            spans.append((len(inputs), len(xs), job.top_k))
            inputs.extend(xs)
            out.append([])
        if not inputs:
            return out
        top_k = max(s[2] for s in spans if s is not None)
        scores: list[list[ClassScore]] = []
        step = self.config.max_batch_size
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            got = model.classify(chunk, top_k)
            if len(got) != len(chunk):
                raise RuntimeError(f"classify() returned {len(got)} results for {len(chunk)} inputs")
            scores.extend(got)
        for j, span in enumerate(spans):
            if span is not None:
                start, n, k = span
                out[j] = [s[:k] for s in scores[start : start + n]]
        return out


def _preprocess(model: ImageClassifier, index: int, image: EncodedImage | RawTensor) -> object:
    try:
        return model.preprocess(image)
    except InvalidInputError as e:
        raise InvalidInputError(f"image {index}: {e}") from None


def _shape_text(shape: Sequence[int]) -> str:
    """A client's shape, short enough to repeat in an error message."""
    return str(list(shape)) if len(shape) <= 8 else f"{len(shape)} dimensions"
