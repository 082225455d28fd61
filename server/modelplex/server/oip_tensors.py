"""Open Inference Protocol tensors and parameters on the wire, to numpy and back.

Pure conversion, checked: every malformed tensor or parameter is an InvalidInputError
that names the tensor (or parameter) and says what was expected, so that ModelInfer
answers INVALID_ARGUMENT and never reads past a buffer or allocates what a shape claims
before the bytes are there.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from modelplex.errors import InvalidInputError
from modelplex.oip_mapping import DATATYPES, Outputs, Parameter, ParameterSpec, TensorSpec
from modelplex_client.pb import grpc_predict_v2_pb2 as pb

__all__ = ["check_inputs", "decode_inputs", "encode_outputs", "read_parameters", "serialize_bytes"]

# Where each datatype's elements go in InferTensorContents (FP16 travels raw only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH = struct.Struct("<I")


def _dtype(datatype: str) -> np.dtype[Any]:
    # Raw contents are little-endian whatever the host.
    return np.dtype(object) if datatype == "BYTES" else np.dtype(DATATYPES[datatype]).newbyteorder("<")


def _shape_text(shape: Sequence[int]) -> str:
    return str(list(shape)) if len(shape) <= 8 else f"{len(shape)} dimensions"


def decode_inputs(request: pb.ModelInferRequest) -> tuple[dict[str, np.ndarray], dict[str, str], bool]:
    """The request's input tensors by name, their datatypes, and whether they came as
    ``raw_input_contents``."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: give one per input, in order"
        )
    tensors: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInputError(f"input {i} has no name")
        if name in tensors:
            raise InvalidInputError(f"input {name!r} is given twice")
        if tensor.datatype not in DATATYPES:
            raise InvalidInputError(
                f"input {name!r}: datatype {tensor.datatype!r} is not one of {', '.join(DATATYPES)}"
            )
        if tensor.parameters:  # e.g. Triton's shared-memory regions, which are not served
            raise InvalidInputError(
                f"input {name!r}: parameter {sorted(tensor.parameters)[0]!r} is not taken; send the data in the request"
            )
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInputError(f"input {name!r}: shape {_shape_text(shape)} has a negative dimension")
        count = math.prod(shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(f"input {name!r} has contents while raw_input_contents is used: use one form")
            array = _from_raw(name, tensor.datatype, count, raw[i])
        else:
            array = _from_contents(name, tensor.datatype, count, tensor.contents)
        tensors[name] = array.reshape(shape)
        datatypes[name] = tensor.datatype
    return tensors, datatypes, bool(raw)


def _from_raw(name: str, datatype: str, count: int, data: bytes) -> np.ndarray:
    if datatype == "BYTES":
        return _deserialize_bytes(name, count, data)
    dtype = _dtype(datatype)
    if len(data) != count * dtype.itemsize:
        raise InvalidInputError(
            f"input {name!r}: raw contents have {len(data)} bytes; {count} {datatype} elements need "
            f"{count * dtype.itemsize}"
        )
    return np.frombuffer(data, dtype=dtype)


def _deserialize_bytes(name: str, count: int, data: bytes) -> np.ndarray:
    """Elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes."""
    if count * _LENGTH.size > len(data):
        raise InvalidInputError(f"input {name!r}: {len(data)} raw bytes cannot hold {count} BYTES elements")
    out = np.empty(count, dtype=object)
    offset = 0
    view = memoryview(data)
    for k in range(count):
        if offset + _LENGTH.size > len(data):
            raise InvalidInputError(f"input {name!r}: raw contents end inside the length of element {k}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise InvalidInputError(f"input {name!r}: element {k} claims {length} bytes; {len(data) - offset} are left")
        out[k] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(data):
        raise InvalidInputError(f"input {name!r}: {len(data) - offset} raw bytes follow its {count} BYTES elements")
    return out


def _from_contents(name: str, datatype: str, count: int, contents: pb.InferTensorContents) -> np.ndarray:
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r}: {datatype} has no typed contents; send it in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInputError(f"input {name!r}: {field} has {len(values)} elements; the shape needs {count}")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind in "iu":
        wide = np.array(values, dtype=np.uint64 if datatype == "UINT64" else np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInputError(f"input {name!r}: a value is outside the range of {datatype}")
        return wide.astype(dtype)
    return np.array(values, dtype=dtype)


def check_inputs(tensors: Mapping[str, np.ndarray], datatypes: Mapping[str, str], specs: Sequence[TensorSpec]) -> None:
    """Each input is declared, of its declared datatype and rank (and fixed sizes); each
    required input is present."""
    by_name = {s.name: s for s in specs}
    for name, array in tensors.items():
        spec = by_name.get(name)
        if spec is None:
            raise InvalidInputError(f"unknown input {name!r}; the model takes {_names(specs)}")
        if datatypes[name] != spec.datatype:
            raise InvalidInputError(f"input {name!r} must be {spec.datatype}, got {datatypes[name]}")
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        )
        if not fits:
            raise InvalidInputError(
                f"input {name!r} must have shape {list(spec.shape)} (-1: any size), got {_shape_text(array.shape)}"
            )
    missing = [s.name for s in specs if not s.optional and s.name not in tensors]
    if missing:
        raise InvalidInputError(f"missing input {missing[0]!r}; the model takes {_names(specs)}")


def _names(specs: Iterable[TensorSpec | ParameterSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs) or "none"


def read_parameters(
    parameters: Mapping[str, pb.InferParameter], specs: Sequence[ParameterSpec], reserved: Iterable[str] = ()
) -> tuple[dict[str, Parameter], dict[str, Parameter]]:
    """``(the task's parameters, the server's)``: each converted to its declared kind; the
    names in ``reserved`` (the server's own, like ``timeout``) are returned apart, as sent."""
    kinds = {s.name: s for s in specs}
    reserved = set(reserved)
    task: dict[str, Parameter] = {}
    server: dict[str, Parameter] = {}
    for name, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(f"parameter {name!r} has no value")
        given = getattr(value, choice)
        if name in reserved:
            server[name] = given
            continue
        spec = kinds.get(name)
        if spec is None:
            raise InvalidInputError(f"unknown parameter {name!r}; the model takes {_names(specs)}")
        task[name] = _convert(name, spec.kind, choice, given)
    return task, server


def _convert(name: str, kind: type, choice: str, value: Any) -> Parameter:
    if kind is bool and choice == "bool_param":
        return bool(value)
    if kind is int and choice in ("int64_param", "uint64_param"):
        return int(value)
    if kind is float and choice in ("double_param", "int64_param", "uint64_param"):
        return float(value)
    if kind is float and choice == "string_param":
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    if kind is str and choice == "string_param":
        return str(value)
    given = choice.removesuffix("_param")
    raise InvalidInputError(f"parameter {name!r} must be {_KIND_NAMES[kind]}, got {given} {value!r}")


_KIND_NAMES = {bool: "a bool", int: "an integer", float: "a number", str: "a string"}


def serialize_bytes(elements: Iterable[Any]) -> bytes:
    """A BYTES tensor's raw contents (str elements are sent as UTF-8)."""
    parts = []
    for e in elements:
        b = e.encode() if isinstance(e, str) else bytes(e)
        parts.append(_LENGTH.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def encode_outputs(
    response: pb.ModelInferResponse, outputs: Outputs, specs: Sequence[TensorSpec], wanted: Sequence[str], raw: bool
) -> None:
    """Add ``outputs`` to ``response`` in the declared order: only the ``wanted`` ones when
    the request named some, as ``raw_output_contents`` when ``raw`` (or when one is FP16)."""
    by_name = {s.name: s for s in specs}
    undeclared = sorted(set(outputs) - set(by_name))
    if undeclared:
        raise RuntimeError(f"the task's OIP mapping returned undeclared outputs {undeclared}")
    chosen = [s for s in specs if s.name in outputs and (not wanted or s.name in wanted)]
    raw = raw or any(s.datatype == "FP16" for s in chosen)
    for spec in chosen:
        array = np.asarray(outputs[spec.name])
        tensor = response.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
        if spec.datatype == "BYTES":
            flat = array.reshape(-1).tolist()
            if raw:
                response.raw_output_contents.append(serialize_bytes(flat))
            else:
                tensor.contents.bytes_contents.extend(e.encode() if isinstance(e, str) else bytes(e) for e in flat)
            continue
        typed = np.ascontiguousarray(array, dtype=_dtype(spec.datatype))
        if raw:
            response.raw_output_contents.append(typed.tobytes())
        else:
            getattr(tensor.contents, _CONTENTS[spec.datatype]).extend(typed.reshape(-1).tolist())
