"""Text generation over the Open Inference Protocol: the task's tensors (docs/oip.md).

Input ``text_input``: BYTES ``[1]``, the prompt (UTF-8), as Triton's LLM backends name it.
Parameters as Generate's fields: ``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``,
``repetition_penalty``, ``seed``, and ``stop`` (one stop sequence, or a JSON array of them).

Outputs: ``text_output`` BYTES ``[1]`` (the text), ``token_ids`` INT64 ``[n]``, and on the last
response ``finish_reason`` BYTES ``[1]`` (``length``, ``stop``, ``eos``, ``cancelled``),
``prompt_tokens`` and ``completion_tokens`` INT64 ``[1]``. ModelStreamInfer sends one
response per chunk of the typed Generate stream (decoupled: the last one carries
``triton_final_response``); ModelInfer answers with the whole text, like Complete.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import OipMapping, OipMetadata, Outputs, Parameter, ParameterSpec, Streamed, TensorSpec
from modelplex.server.runtimes.base import TaskRuntime
from modelplex.tasks.text_generation.decode import GenerationChunk, GenerationRequest
from modelplex.tasks.text_generation.interface import SamplingParams
from modelplex.tasks.text_generation.runtime import TextGenerationRuntime

__all__ = ["TextGenerationOip"]

_PARAMETERS = (
    ParameterSpec("max_new_tokens", int, "tokens to generate at most; 0: the model's limit"),
    ParameterSpec("temperature", float, "0 (the default) is greedy"),
    ParameterSpec("top_k", int, "sample among the k most likely tokens; 0 is off"),
    ParameterSpec("top_p", float, "nucleus sampling threshold in (0, 1]; 1 is off"),
    ParameterSpec("repetition_penalty", float, "1 is off"),
    ParameterSpec("seed", int, "the same seed gives the same tokens"),
    ParameterSpec("stop", str, "a stop sequence, or a JSON array of them"),
)


class TextGenerationOip(OipMapping):
    """A prompt and Generate's parameters in; text and token ids out, streamed."""

    decoupled = True

    def metadata(self, runtime: TaskRuntime[Any]) -> OipMetadata:
        return OipMetadata(
            inputs=(TensorSpec("text_input", "BYTES", (1,), description="the prompt, UTF-8"),),
            outputs=(
                TensorSpec("text_output", "BYTES", (1,), description="the text (a streamed response: its delta)"),
                TensorSpec("token_ids", "INT64", (-1,), description="the generated tokens"),
                TensorSpec("finish_reason", "BYTES", (1,), description="on the last response"),
                TensorSpec("prompt_tokens", "INT64", (1,), description="on the last response"),
                TensorSpec("completion_tokens", "INT64", (1,), description="on the last response"),
            ),
            parameters=_PARAMETERS,
        )

    async def infer(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> Outputs:
        texts: list[str] = []
        tokens: list[int] = []
        last: GenerationChunk | None = None
        async for chunk in _chunks(runtime, inputs, parameters, deadline):
            texts.append(chunk.text)
            tokens.extend(chunk.token_ids)
            last = chunk
        assert last is not None, "a generation ends with a final chunk"
        return _outputs("".join(texts), tokens, last)

    async def stream(
        self,
        runtime: TaskRuntime[Any],
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, Parameter],
        deadline: float | None,
    ) -> AsyncIterator[Streamed]:
        async for chunk in _chunks(runtime, inputs, parameters, deadline):
            yield Streamed(_outputs(chunk.text, chunk.token_ids, chunk), final=chunk.finish_reason is not None)


async def _chunks(
    runtime: TaskRuntime[Any],
    inputs: Mapping[str, np.ndarray],
    parameters: Mapping[str, Parameter],
    deadline: float | None,
) -> AsyncIterator[GenerationChunk]:
    """The chunks of the typed Generate stream for this request."""
    generation = cast(TextGenerationRuntime, runtime).generate(_request(inputs, parameters), deadline)
    try:
        async for chunk in generation:
            yield chunk
    finally:
        generation.cancel()  # a no-op once finished; else the sequence leaves the batch


def _outputs(text: str, token_ids: Any, chunk: GenerationChunk) -> dict[str, np.ndarray]:
    out = {
        "text_output": np.array([text.encode()], dtype=object),
        "token_ids": np.array(list(token_ids), dtype=np.int64),
    }
    if chunk.finish_reason is not None:
        out["finish_reason"] = np.array([chunk.finish_reason.encode()], dtype=object)
        out["prompt_tokens"] = np.array([chunk.prompt_tokens], dtype=np.int64)
        out["completion_tokens"] = np.array([chunk.completion_tokens], dtype=np.int64)
    return out


def _request(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Parameter]) -> GenerationRequest:
    try:
        prompt = bytes(inputs["text_input"][0]).decode()
    except UnicodeDecodeError:
        raise InvalidInputError("input 'text_input' is not valid UTF-8") from None
    seed = parameters.get("seed")
    params = SamplingParams(
        temperature=float(parameters.get("temperature", 0.0)),
        top_k=int(parameters.get("top_k", 0)),
        top_p=float(parameters.get("top_p", 1.0)),
        repetition_penalty=float(parameters.get("repetition_penalty", 1.0)),
        seed=None if seed is None else int(seed),
    )
    return GenerationRequest(
        prompt=prompt,
        max_new_tokens=int(parameters.get("max_new_tokens", 0)),
        params=params,
        stop=_stops(parameters.get("stop")),
    )


def _stops(value: Parameter | None) -> tuple[str, ...]:
    if value is None:
        return ()
    text = str(value)
    if not text.startswith("["):
        return (text,)
    try:
        stops = json.loads(text)
    except ValueError as e:
        raise InvalidInputError(f"parameter 'stop' starts with '[' but is not a JSON array: {e}") from None
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidInputError("parameter 'stop' must be a string or a JSON array of strings")
    return tuple(stops)
