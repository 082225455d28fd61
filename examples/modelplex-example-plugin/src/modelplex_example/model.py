"""The dominant-color classifier: softmax over the scaled per-channel means."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from PIL import Image, UnidentifiedImageError

from modelplex import ClassScore, EncodedImage, ImageClassifier, InvalidInputError, LoadContext, RawTensor

LABELS = ("red", "green", "blue")


class DominantColor(ImageClassifier):
    def __init__(self, ctx: LoadContext) -> None:
        self.device = torch.device(ctx.device)
        self.size: int = ctx.settings.size  # type: ignore[attr-defined]
        self.sharpness: float = ctx.settings.sharpness  # type: ignore[attr-defined]
        self.labels = LABELS
        self.input_shape = (3, self.size, self.size)

    def load(self) -> None:
        pass  # a fixed function: nothing to load

    def unload(self) -> None:
        pass

    def preprocess(self, image: EncodedImage | RawTensor) -> torch.Tensor:
        if isinstance(image, RawTensor):
            return torch.frombuffer(bytearray(image.data), dtype=torch.float32).reshape(image.shape)
        try:
            pil = Image.open(io.BytesIO(image.data)).convert("RGB").resize((self.size, self.size))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise InvalidInputError(f"cannot decode image: {e}") from None
        data = torch.frombuffer(bytearray(pil.tobytes()), dtype=torch.uint8)
        return data.reshape(self.size, self.size, 3).permute(2, 0, 1).float().div(255)

    def classify(self, inputs: Sequence[torch.Tensor], top_k: int) -> list[list[ClassScore]]:
        with torch.inference_mode():
            batch = torch.stack(list(inputs)).to(self.device)
            probs = (batch.mean(dim=(2, 3)) * self.sharpness).softmax(dim=1)
            scores, indices = probs.topk(top_k, dim=1)
        return [
            [ClassScore(int(i), LABELS[int(i)], float(s)) for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
