"""The models the peers serve, written once for every peer: the same torch code as modelplex's
``dominant-color`` (example plugin) and ``resnet18`` (random weights), and the same answer
(softmax, then the top min(5, classes) scores, their indices and labels).

Imported by the peers' servers, in the peers' own virtual environment (never modelplex's).
"""

from __future__ import annotations

import os

import numpy as np
import torch

COLOR_LABELS = ("red", "green", "blue")
SHAPES = {"dominant-color": (3, 32, 32), "resnet18": (3, 224, 224)}


class ChannelMeans(torch.nn.Module):
    """dominant-color: a 3 x 3 mix (10 x the identity) of the per-channel means."""

    def __init__(self, sharpness: float = 10.0) -> None:
        super().__init__()
        self.mix = torch.nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3) * sharpness)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x.mean(dim=(2, 3)))


class Classifier:
    """A module, its labels and the top-k answer, as modelplex's torch kit computes it."""

    def __init__(self, name: str) -> None:
        # OMP_NUM_THREADS sets the server's torch threads, as it does for modelplex.
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if name == "dominant-color":
            self.module: torch.nn.Module = ChannelMeans()
            self.labels: tuple[str, ...] = COLOR_LABELS
        elif name == "resnet18":
            import torchvision

            self.module = torchvision.models.resnet18(weights=None)
            self.labels = tuple(f"class_{i}" for i in range(1000))
        else:
            raise ValueError(f"unknown model {name!r}")
        self.module.eval()
        self.shape = SHAPES[name]
        self.top_k = min(5, len(self.labels))
        self.classify(np.zeros((1, *self.shape), dtype=np.float32))  # warm up

    def classify(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, C, H, W) float32 -> scores (N, k) float32, indices (N, k) int64, labels (N, k) bytes."""
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(batch))
            scores, indices = logits.float().softmax(dim=1).topk(self.top_k, dim=1)
        idx = indices.numpy()
        labels = np.array([[self.labels[i].encode() for i in row] for row in idx.tolist()], dtype=np.object_)
        return scores.numpy(), idx, labels
