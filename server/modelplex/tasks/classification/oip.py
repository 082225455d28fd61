"""Image classification over the Open Inference Protocol: the task's tensors (docs/oip.md).

Inputs, exactly one of:

- ``images``: BYTES ``[N]``, the encoded files (JPEG, PNG, WebP, BMP), as Classify's ``encoded``;
- ``pixel_values``: FP32 ``[N, C, H, W]``, preprocessed images, as Classify's ``tensor``.

Parameter ``top_k`` (int; 0 or absent: min(5, classes)). Outputs, best first per image:
``scores`` FP32 ``[N, k]`` (softmax), ``indices`` INT64 ``[N, k]``, ``labels`` BYTES ``[N, k]``.
The request reaches the same runtime call as Classify, so it is batched with typed
requests and answers with the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import OipMapping, OipMetadata, Outputs, Parameter, ParameterSpec, TensorSpec
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.tasks.classification.interface import EncodedImage, RawTensor
from modelplex.tasks.classification.runtime import ClassificationRuntime

__all__ = ["ClassificationOip"]


class ClassificationOip(OipMapping):
    """Encoded images or a float batch in; scores, indices and labels out."""

    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        shape = cast(ClassificationRuntime, runtime).input_shape
        return OipMetadata(
            inputs=(
                TensorSpec("images", "BYTES", (-1,), optional=True, description="encoded image files"),
                TensorSpec("pixel_values", "FP32", (-1, *shape), optional=True, description="preprocessed images"),
            ),
            outputs=(
                TensorSpec("scores", "FP32", (-1, -1), description="softmax scores, best first"),
                TensorSpec("indices", "INT64", (-1, -1), description="class indices"),
                TensorSpec("labels", "BYTES", (-1, -1), description="class names"),
            ),
            parameters=(ParameterSpec("top_k", int, "classes per image; 0: min(5, classes)"),),
        )

    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        classifier = cast(ClassificationRuntime, runtime)
        images = _images(inputs)
        results = await classifier.classify(images, int(parameters.get("top_k", 0)), deadline)
        k = len(results[0])
        scores = np.array([[c.score for c in r] for r in results], dtype=np.float32).reshape(len(results), k)
        indices = np.array([[c.index for c in r] for r in results], dtype=np.int64).reshape(len(results), k)
        labels = np.empty((len(results), k), dtype=object)
        for i, r in enumerate(results):
            labels[i, :] = [c.label.encode() for c in r]
        return {"scores": scores, "indices": indices, "labels": labels}


def _images(inputs: Mapping[str, np.ndarray]) -> list[EncodedImage | RawTensor]:
    encoded, pixels = inputs.get("images"), inputs.get("pixel_values")
    if (encoded is None) == (pixels is None):
        raise InvalidInputError("send exactly one of the inputs 'images' (BYTES) and 'pixel_values' (FP32)")
    if encoded is not None:
        return [EncodedImage(bytes(data)) for data in encoded]
    assert pixels is not None
    # Row-major little-endian float32 per image: what the typed API's tensor carries.
    batch = np.ascontiguousarray(pixels, dtype="<f4")
    return [RawTensor(tuple(row.shape), "float32", row.tobytes()) for row in batch]
