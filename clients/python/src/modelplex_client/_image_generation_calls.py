"""The image-generation calls of both clients, and the ``modelplex imagine`` command.

:class:`ImageGenerationCalls` is a base of :class:`~modelplex_client._methods.Methods`:
``generate_images`` and ``interpolate_images`` stream the response messages, one image each,
as the server finishes them (an async iterator on the asyncio client). Saving images needs
nothing more; the grid of ``modelplex imagine`` needs Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from modelplex_client._methods import Stream
from modelplex_client.pb import image_generation_pb2 as pb
from modelplex_client.pb import image_generation_pb2_grpc as pb_grpc

__all__ = [
    "ImageGenerationCalls",
    "add_imagine_parser",
    "cli_imagine",
    "generate_images_request",
    "image_grid",
    "interpolate_request",
    "save_image",
]

_FORMATS = {"png": pb.IMAGE_FORMAT_PNG, "jpeg": pb.IMAGE_FORMAT_JPEG, "float32": pb.IMAGE_FORMAT_FLOAT32}
_METHODS = {"slerp": pb.INTERPOLATION_METHOD_SLERP, "linear": pb.INTERPOLATION_METHOD_LINEAR}
_SUFFIXES = {pb.IMAGE_FORMAT_PNG: ".png", pb.IMAGE_FORMAT_JPEG: ".jpg", pb.IMAGE_FORMAT_FLOAT32: ".f32"}


def _set_class(request: Any, image_class: int | str | None) -> None:
    if isinstance(image_class, bool):
        raise TypeError("image_class is a class index (int) or a class name (str)")
    if isinstance(image_class, int):
        request.class_index = image_class
    elif isinstance(image_class, str):
        request.class_name = image_class


def _output(format: str, jpeg_quality: int) -> pb.ImageOutput:
    try:
        return pb.ImageOutput(format=_FORMATS[format.lower()], jpeg_quality=jpeg_quality)
    except KeyError:
        raise ValueError(f"format must be one of {', '.join(_FORMATS)}, got {format!r}") from None


def generate_images_request(
    *,
    model: str,
    num_images: int = 1,
    seed: int | None = None,
    image_class: int | str | None = None,
    truncation: float | None = None,
    latents: Iterable[float] | Any = (),
    format: str = "png",
    jpeg_quality: int = 0,
    request_id: str = "",
) -> pb.ImageGenerationGenerateRequest:
    """An ImageGenerationGenerateRequest. ``image_class``: an index (int) or a name (str);
    ``latents``: ``num_images`` latent vectors (a flat sequence, or nested, or an array);
    ``format``: ``png``, ``jpeg`` or ``float32``; None leaves an optional field unset."""
    request = pb.ImageGenerationGenerateRequest(
        model=model, request_id=request_id, num_images=num_images, output=_output(format, jpeg_quality)
    )
    if seed is not None:
        request.seed = seed
    if truncation is not None:
        request.truncation = truncation
    _set_class(request, image_class)
    request.latent.extend(_flat(latents))
    return request


def _flat(values: Any) -> list[float]:
    if hasattr(values, "tolist"):  # numpy or torch, without importing either
        values = values.tolist()
    out: list[float] = []
    for v in values:
        if isinstance(v, Iterable):
            out.extend(_flat(v))
        else:
            out.append(float(v))
    return out


def _endpoint(point: int | Sequence[float] | Any) -> pb.InterpolationEndpoint:
    if isinstance(point, int) and not isinstance(point, bool):
        return pb.InterpolationEndpoint(seed=point)
    return pb.InterpolationEndpoint(latent=pb.LatentVector(values=_flat(point)))


def interpolate_request(
    start: int | Sequence[float] | Any,
    end: int | Sequence[float] | Any,
    *,
    model: str,
    num_images: int = 8,
    method: str = "slerp",
    seed: int | None = None,
    image_class: int | str | None = None,
    truncation: float | None = None,
    format: str = "png",
    jpeg_quality: int = 0,
    request_id: str = "",
) -> pb.InterpolateRequest:
    """An InterpolateRequest from ``start`` to ``end``, each a seed (int) or a latent vector."""
    request = pb.InterpolateRequest(
        model=model,
        request_id=request_id,
        num_images=num_images,
        start=_endpoint(start),
        end=_endpoint(end),
        output=_output(format, jpeg_quality),
    )
    try:
        request.method = _METHODS[method.lower()]
    except KeyError:
        raise ValueError(f"method must be slerp or linear, got {method!r}") from None
    if seed is not None:
        request.seed = seed
    if truncation is not None:
        request.truncation = truncation
    _set_class(request, image_class)
    return request


class ImageGenerationCalls:
    """The ImageGeneration calls (a base of ``Methods``)."""

    _channel: Any

    @property
    def _image_generation(self) -> pb_grpc.ImageGenerationStub:
        stub = self.__dict__.get("_image_generation_stub")
        if stub is None:
            stub = self.__dict__["_image_generation_stub"] = pb_grpc.ImageGenerationStub(self._channel)
        return stub

    generate_images = Stream(
        "_image_generation",
        "Generate",
        generate_images_request,
        doc="Generate images: ``generate_images(model=, num_images=1, seed=None, image_class=None, truncation=None, "
        "latents=(), format='png', jpeg_quality=0, request_id='')``, yielding one response per image, in index "
        "order, as each is ready: ``index``, ``seed`` (reuse it to get the image again), ``class_index``, "
        "``class_name`` and ``image`` (``encoded`` PNG/JPEG bytes, or a FLOAT32 ``tensor`` [C, H, W] in [0, 1]).",
    )
    interpolate_images = Stream(
        "_image_generation",
        "Interpolate",
        interpolate_request,
        doc="Interpolate between two seeds or latents: ``interpolate_images(start, end, model=, num_images=8, "
        "method='slerp', seed=None, image_class=None, truncation=None, format='png')``, yielding one frame per "
        "response (with its ``t`` in [0, 1]); frame 0 is the image ``generate_images`` gives for a start seed.",
    )


def save_image(response: Any, folder: str | os.PathLike[str], stem: str | None = None) -> Path:
    """Write a response's image to ``folder``: its PNG or JPEG file as sent, or the raw FLOAT32
    bytes (``.f32``, shape in the name). Returns the path."""
    image = response.image
    stem = stem or f"image_{response.index:03d}_seed{response.seed}"
    if image.WhichOneof("content") == "tensor":
        stem += "_" + "x".join(str(d) for d in image.tensor.shape)
        data = image.tensor.data
    else:
        data = image.encoded
    path = Path(folder) / (stem + _SUFFIXES.get(image.format, ".bin"))
    path.write_bytes(data)
    return path


def image_grid(files: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str], columns: int = 0) -> Path:
    """Tile image files into one PNG, row by row (``columns`` 0: about square). Needs Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError("the grid needs Pillow: pip install pillow") from None
    images = [Image.open(f) for f in files]
    if not images:
        raise ValueError("no images to tile")
    columns = columns or max(1, round(len(images) ** 0.5 + 0.4999))
    rows = -(-len(images) // columns)
    w, h = images[0].size
    grid = Image.new(images[0].mode if images[0].mode in ("L", "RGB", "RGBA") else "RGB", (w * columns, h * rows))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * w, (i // columns) * h))
    out = Path(path)
    grid.save(out, format="PNG")
    return out


def add_imagine_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``modelplex imagine`` to the CLI's subparsers."""
    p = subparsers.add_parser("imagine", help="generate images and write them, with a grid, to a folder")
    p.add_argument("--server", default="127.0.0.1:50051", help="host:port of the server")
    p.add_argument("--timeout", type=float, default=None, help="seconds for the whole stream (default: none)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--model", required=True)
    p.add_argument("-n", "--num-images", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="image i gets seed + i; default: drawn by the server")
    p.add_argument("--class", dest="image_class", default=None, help="class index or name (class-conditional models)")
    p.add_argument("--truncation", type=float, default=None, help="in (0, 1]; default: the model's")
    p.add_argument("--format", choices=["png", "jpeg"], default="png")
    p.add_argument("--quality", type=int, default=0, help="JPEG quality 1-100 (default 90)")
    p.add_argument("-o", "--output", default=".", help="folder to write into (created if missing)")
    p.add_argument("--no-grid", action="store_true", help="do not write grid.png")
    return p


def cli_imagine(client: Any, args: argparse.Namespace) -> None:
    """``modelplex imagine``: write each image as it arrives, then grid.png of them all."""
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    image_class = args.image_class
    if image_class is not None and image_class.lstrip("-").isdigit():
        image_class = int(image_class)
    responses = client.generate_images(
        model=args.model,
        num_images=args.num_images,
        seed=args.seed,
        image_class=image_class,
        truncation=args.truncation,
        format=args.format,
        jpeg_quality=args.quality,
    )
    files = []
    for response in responses:
        path = save_image(response, folder)
        files.append(path)
        if args.json:
            record = {"index": response.index, "seed": response.seed, "path": str(path)}
            if response.class_index >= 0:
                record |= {"class_index": response.class_index, "class_name": response.class_name}
            print(json.dumps(record), flush=True)
        else:
            label = f"  {response.class_name} ({response.class_index})" if response.class_index >= 0 else ""
            print(f"{path}  seed={response.seed}{label}", flush=True)
    if files and not args.no_grid:
        try:
            grid = image_grid(files, folder / "grid.png")
        except RuntimeError as e:
            print(f"modelplex: no grid: {e}", file=sys.stderr)
        else:
            if not args.json:
                print(grid)
