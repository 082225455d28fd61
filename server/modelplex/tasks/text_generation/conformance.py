"""The calls the conformance kit makes against a text generator."""

from __future__ import annotations

from typing import Any

from modelplex.taskdef import ConformanceProbes
from modelplex_client.pb import text_generation_pb2 as pb
from modelplex_client.pb import text_generation_pb2_grpc as pb_grpc

__all__ = ["PROBES"]


def _sample(channel: Any, model: str) -> None:
    response = pb_grpc.TextGenerationStub(channel).Complete(
        pb.CompleteRequest(model=model, prompt="hello", max_new_tokens=2), timeout=60
    )
    assert response.usage.completion_tokens >= 1, response


def _invalid(channel: Any, model: str) -> None:
    pb_grpc.TextGenerationStub(channel).Complete(
        pb.CompleteRequest(model=model, prompt="hello", max_new_tokens=-1), timeout=60
    )


def _cancel(channel: Any, model: str) -> None:
    call = pb_grpc.TextGenerationStub(channel).Generate(
        pb.GenerateRequest(model=model, prompt="hello", max_new_tokens=64), timeout=60
    )
    next(call)
    call.cancel()


PROBES = ConformanceProbes(sample=_sample, invalid=_invalid, cancel=_cancel)
