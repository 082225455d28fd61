"""The tensors of an Open Inference Protocol response, as the tests read them."""

from __future__ import annotations

import struct

import numpy as np

_DTYPES = {"FP32": "<f4", "INT32": "<i4", "INT64": "<i8", "UINT64": "<u8", "BOOL": "?"}
_FIELDS = {
    "FP32": "fp32_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT64": "uint64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


def outputs(response) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Each output tensor by name, whether it came in ``raw_output_contents`` or in typed
    ``contents``: numbers with their dtype, BYTES as an object array of ``bytes``."""
    out = {}
    for i, t in enumerate(response.outputs):
        shape = tuple(t.shape)
        if t.datatype == "BYTES":
            if response.raw_output_contents:
                data, items, offset = response.raw_output_contents[i], [], 0
                while offset < len(data):  # each element: a little-endian uint32 length, then the bytes
                    (n,) = struct.unpack_from("<I", data, offset)
                    items.append(data[offset + 4 : offset + 4 + n])
                    offset += 4 + n
            else:
                items = list(t.contents.bytes_contents)
            out[t.name] = np.array(items, dtype=object).reshape(shape)
        elif response.raw_output_contents:
            out[t.name] = np.frombuffer(response.raw_output_contents[i], dtype=_DTYPES[t.datatype]).reshape(shape)
        else:
            values = list(getattr(t.contents, _FIELDS[t.datatype]))
            out[t.name] = np.array(values, dtype=_DTYPES[t.datatype]).reshape(shape)
    return out
