"""The calls modelplex's conformance kit (``modelplex.conformance``) makes against a detector.

Any spec of this task, from this distribution or another, is then checked end to end by
``check_model`` with no probes of its own: one ordinary Detect call, and one with an image
that cannot be decoded, which must be INVALID_ARGUMENT.
"""

from __future__ import annotations

import io
from typing import Any

from modelplex.taskdef import ConformanceProbes

from modelplex_detection.pb import detection_pb2 as pb
from modelplex_detection.pb import detection_pb2_grpc as pb_grpc

__all__ = ["PROBES"]


def _png() -> bytes:
    from PIL import Image  # only when probing: the plugin module stays light

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _sample(channel: Any, model: str) -> None:
    request = pb.DetectRequest(model=model, images=[_png()], score_threshold=0.0, max_detections=5)
    response = pb_grpc.ObjectDetectionStub(channel).Detect(request, timeout=60)
    assert len(response.results) == 1 and len(response.results[0].detections) <= 5, response


def _invalid(channel: Any, model: str) -> None:
    request = pb.DetectRequest(model=model, images=[b"this is not an image"])
    pb_grpc.ObjectDetectionStub(channel).Detect(request, timeout=60)


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid)
"""Detect calls for the conformance kit: registered with the task (``TaskDefinition.conformance``)."""
