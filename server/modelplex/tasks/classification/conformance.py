"""The calls the conformance kit makes against an image classifier."""

from __future__ import annotations

import io
from typing import Any

from modelplex.taskdef import ConformanceProbes
from modelplex_client.pb import image_classification_pb2 as pb
from modelplex_client.pb import image_classification_pb2_grpc as pb_grpc

__all__ = ["PROBES"]


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _sample(channel: Any, model: str) -> None:
    request = pb.ClassifyRequest(model=model, top_k=1)
    request.images.add().encoded = _png()
    response = pb_grpc.ImageClassificationStub(channel).Classify(request, timeout=60)
    assert len(response.results) == 1 and len(response.results[0].classes) == 1, response


def _invalid(channel: Any, model: str) -> None:
    request = pb.ClassifyRequest(model=model)
    request.images.add().encoded = b"this is not an image"
    pb_grpc.ImageClassificationStub(channel).Classify(request, timeout=60)


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid)
