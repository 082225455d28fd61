"""Object detection on modelplex's shared dynamic-batching runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelplex import InvalidInputError, ModelplexError
from modelplex.runtime import BatchingRuntime, Instance, inference_error

from modelplex_detection.interface import Detection, ObjectDetector
from modelplex_detection.pb import detection_pb2 as pb
from modelplex_detection.settings import DetectionSettings

__all__ = ["DEFAULT_MAX_DETECTIONS", "DEFAULT_SCORE_THRESHOLD", "DetectJob", "DetectionRuntime"]

DEFAULT_SCORE_THRESHOLD = 0.5
"""The score threshold of a request that sets none."""
DEFAULT_MAX_DETECTIONS = 100
"""The detections per image of a request that asks for 0 (capped by the model's limit)."""

Result = list[list[Detection]]


@dataclass(frozen=True, slots=True)
class DetectJob:
    """One validated Detect request."""

    images: Sequence[bytes]
    score_threshold: float
    max_detections: int


class DetectionRuntime(BatchingRuntime[DetectionSettings, DetectJob, Result]):
    """Detect requests, batched by image across callers; a request takes one slot per image."""

    def __init__(self, name: str, instances: Sequence[Instance], settings: DetectionSettings) -> None:
        super().__init__(name, instances, settings)
        first: ObjectDetector = self.first_model()
        self.num_classes = len(first.labels)
        self.max_detections = int(first.max_detections)
        self.min_score = float(first.min_score)

    def info(self) -> pb.ObjectDetectionInfo:
        return pb.ObjectDetectionInfo(
            num_classes=self.num_classes,
            max_images_per_request=self.settings.max_images_per_request,
            max_detections=self.max_detections,
            min_score=self.min_score,
        )

    def validate(self, images: Sequence[bytes], score_threshold: float | None, max_detections: int) -> DetectJob:
        """Check what can be checked on the event loop; the job with the defaults filled in."""
        if not images:
            raise InvalidInputError("images is empty: send at least one image")
        limit = self.settings.max_images_per_request
        if len(images) > limit:
            raise InvalidInputError(f"{len(images)} images in one request; this model takes at most {limit}")
        for i, image in enumerate(images):
            if not image:
                raise InvalidInputError(f"image {i} is empty: send the bytes of a JPEG, PNG, WebP or BMP file")
        if score_threshold is None:
            score_threshold = DEFAULT_SCORE_THRESHOLD
        elif not 0.0 <= score_threshold <= 1.0:  # written so that NaN fails too
            raise InvalidInputError(
                f"score_threshold must be between 0 and 1 (unset means {DEFAULT_SCORE_THRESHOLD}), "
                f"got {score_threshold}"
            )
        default = min(DEFAULT_MAX_DETECTIONS, self.max_detections)
        if not 0 <= max_detections <= self.max_detections:
            raise InvalidInputError(
                f"max_detections must be between 1 and {self.max_detections} (0 means {default}), got {max_detections}"
            )
        return DetectJob(images, score_threshold, max_detections or default)

    async def detect(
        self,
        images: Sequence[bytes],
        score_threshold: float | None,
        max_detections: int,
        deadline: float | None = None,
    ) -> Result:
        """Detect the objects in ``images``: one list of detections per image, best first.
        ``score_threshold`` None and ``max_detections`` 0 mean the defaults."""
        job = self.validate(images, score_threshold, max_detections)
        return await self.submit(job, len(images), deadline)

    def run_batch(self, model: ObjectDetector, jobs: Sequence[DetectJob]) -> list[Result | BaseException]:
        """On the instance's thread: preprocess each request (failing only it), detect all together."""
        out: list[Result | BaseException] = []
        inputs: list[object] = []
        spans: list[tuple[int, int] | None] = []
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
            spans.append((len(inputs), len(xs)))
            inputs.extend(xs)
            out.append([])
        live = [job for job, span in zip(jobs, spans, strict=True) if span is not None]
        if not live:
            return out
        # One detect() call serves requests with different limits: it runs with the loosest
        # (lowest threshold, most detections) and each request keeps its own prefix of the
        # best-first list, which is exactly what a call with its own limits returns.
        threshold = min(job.score_threshold for job in live)
        most = max(job.max_detections for job in live)
        found: Result = []
        step = self.settings.max_batch_size
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            got = model.detect(chunk, threshold, most)
            if len(got) != len(chunk):
                raise RuntimeError(f"detect() returned {len(got)} results for {len(chunk)} inputs")
            found.extend(got)
        for j, (job, span) in enumerate(zip(jobs, spans, strict=True)):
            if span is not None:
                start, n = span
                out[j] = [_keep(d, job) for d in found[start : start + n]]
        return out


def _keep(detections: list[Detection], job: DetectJob) -> list[Detection]:
    kept = [d for d in detections if d.score >= job.score_threshold]
    return kept[: job.max_detections]


def _preprocess(model: ObjectDetector, index: int, image: bytes) -> object:
    try:
        return model.preprocess(image)
    except InvalidInputError as e:
        raise InvalidInputError(f"image {index}: {e}") from None
