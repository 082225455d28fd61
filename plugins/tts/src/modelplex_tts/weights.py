"""Where the weights come from: torchaudio bundles and NVIDIA checkpoints in the torch hub
cache, checkpoint files, or random initialisation; and building the modules that fit them.

Every file is read with ``torch.load(weights_only=True)``; the architecture is read from
the tensors' shapes, so a checkpoint of any size loads, and one that fits no architecture
fails naming the keys that do not fit.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchaudio.models import Tacotron2, WaveRNN

from modelplex import ModelLoadError, WeightsNotFoundError
from modelplex_tts.tacotron import from_nvidia, params_from_state_dict
from modelplex_tts.waveglow import FULL_CONFIG, WaveGlow

__all__ = [
    "NVIDIA_FILES",
    "build_tacotron2",
    "build_wavernn",
    "hub_file",
    "random_tacotron2",
    "random_waveglow",
    "random_wavernn",
    "read_checkpoint",
    "seeded",
]

TORCHAUDIO_URL = "https://download.pytorch.org/torchaudio/models"
NVIDIA_FILES = {
    "tacotron2": (
        "nvidia_tacotron2pyt_fp32_20190427",
        "https://api.ngc.nvidia.com/v2/models/nvidia/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/"
        "nvidia_tacotron2pyt_fp32_20190427",
    ),
    "waveglow": (
        "nvidia_waveglowpyt_fp32_20190427",
        "https://api.ngc.nvidia.com/v2/models/nvidia/waveglow_ckpt_fp32/versions/19.09.0/files/"
        "nvidia_waveglowpyt_fp32_20190427",
    ),
}
"""DeepLearningExamples' published checkpoints (its torch.hub entry points' files)."""

_SEED_LOCK = threading.Lock()


def hub_file(filename: str, url: str, allow_download: bool) -> Path:
    """A file of the torch hub cache (``<hub dir>/checkpoints``; DeepLearningExamples' entry
    points use ``<torch home>/checkpoints``, also looked in); downloaded there only when
    allowed, else WeightsNotFoundError with the path and the URL."""
    hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
    home = Path(os.path.expanduser(os.getenv("TORCH_HOME", "~/.cache/torch"))) / "checkpoints" / filename
    for path in (hub, home):
        if path.is_file():
            return path
    if not allow_download:
        raise WeightsNotFoundError(
            f"{filename} is not in the torch hub cache ({hub}); download {url} to that path, "
            "or allow downloads (allow_download = true)"
        )
    hub.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(hub))
    return hub


def read_checkpoint(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)``; a missing file or pickled objects as modelplex errors."""
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"{path} holds pickled Python objects, not only tensors, and is not loaded "
            f"(that would run code from the file): {str(e).splitlines()[0][:200]}. "
            f"Save the {what}'s state_dict() instead"
        ) from None


def _key_check(path: object, what: str, expected: set[str], got: set[str]) -> None:
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing or extra:
        raise ModelLoadError(
            f"{path} does not fit a {what}: missing keys {_names(missing)}; unexpected keys {_names(extra)}"
        )


def _names(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f", and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def build_tacotron2(ckpt: Any, path: object) -> tuple[Tacotron2, str]:
    """A Tacotron2 from torchaudio's layout (a state dict) or DeepLearningExamples' (a dict with
    ``state_dict`` and ``config``, ``module.`` prefixes); returns it and the layout's name."""
    layout = "torchaudio"
    sd = ckpt
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        sd, layout = ckpt["state_dict"], "nvidia"
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{path} is not a Tacotron 2 state dict nor a dict with one under 'state_dict'")
    if layout == "nvidia" or any(k.startswith("module.") or ".linear_layer." in k for k in sd):
        sd, layout = from_nvidia(sd), "nvidia"
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    try:
        params = params_from_state_dict(sd)
    except (KeyError, IndexError) as e:
        raise ModelLoadError(f"{path} is not a Tacotron 2 checkpoint: it has no tensor {e}") from None
    model = Tacotron2(**params)
    _key_check(path, "Tacotron 2 of its shapes", set(model.state_dict()), set(sd))
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise ModelLoadError(f"{path} does not fit a Tacotron 2: {e}") from None
    return model.eval(), layout


def build_wavernn(sd: Any, path: object) -> WaveRNN:
    """A torchaudio WaveRNN from its state dict, its sizes read from the tensors."""
    if not isinstance(sd, Mapping):
        raise ModelLoadError(f"{path} is not a WaveRNN state dict")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    try:
        ups = sorted(
            (int(k.split(".")[2]), v.shape[-1]) for k, v in sd.items() if k.startswith("upsample.upsample_layers.")
        )
        scales = [(width - 1) // 2 for _, width in ups]
        first = sd["upsample.resnet.melresnet_model.0.weight"]
        n_hidden, n_freq, kernel = first.shape
        blocks = {k.split(".")[3] for k in sd if ".resblock_model." in k}
        params = {
            "upsample_scales": scales,
            "n_classes": sd["fc3.weight"].shape[0],
            "hop_length": math.prod(scales),
            "n_res_block": len(blocks),
            "n_rnn": sd["rnn1.weight_hh_l0"].shape[1],
            "n_fc": sd["fc1.weight"].shape[0],
            "kernel_size": kernel,
            "n_freq": n_freq,
            "n_hidden": n_hidden,
            "n_output": (sd["fc.weight"].shape[1] - 1 - n_freq) * 4,
        }
    except (KeyError, ValueError) as e:
        raise ModelLoadError(f"{path} is not a WaveRNN state dict: it has no tensor {e}") from None
    model = WaveRNN(**params)
    _key_check(path, "WaveRNN of its shapes", set(model.state_dict()), set(sd))
    model.load_state_dict(sd)
    return model.eval()


class seeded:  # noqa: N801 - used as a context manager
    """Random initialisation from a fixed seed, so that every instance of a model with random
    weights gets the same ones (serialised: torch's default generator is process-wide)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        _SEED_LOCK.acquire()
        self._state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._state)
        _SEED_LOCK.release()


_TINY_TACOTRON = {
    "symbol_embedding_dim": 32,
    "encoder_embedding_dim": 32,
    "encoder_n_convolution": 1,
    "decoder_rnn_dim": 64,
    "attention_rnn_dim": 64,
    "attention_hidden_dim": 16,
    "attention_location_n_filter": 4,
    "attention_location_kernel_size": 7,
    "prenet_dim": 32,
    "postnet_n_convolution": 2,
    "postnet_embedding_dim": 32,
}


def random_tacotron2(n_symbol: int, size: str, seed: int) -> Tacotron2:
    """Tacotron 2 with random weights: the published size (torchaudio's defaults) or tiny."""
    with seeded(seed):
        return Tacotron2(n_symbol=n_symbol, **(_TINY_TACOTRON if size == "tiny" else {})).eval()


def random_waveglow(size: str, seed: int) -> WaveGlow:
    """WaveGlow with random weights: DeepLearningExamples' size (268 M parameters) or tiny."""
    config = FULL_CONFIG
    if size == "tiny":
        config = {
            **FULL_CONFIG,
            "n_flows": 4,
            "n_early_every": 2,
            "WN_config": {"n_layers": 2, "kernel_size": 3, "n_channels": 16},
        }
    with seeded(seed):
        model = WaveGlow(**config)
    model.freeze()
    return model.eval()


def random_wavernn(size: str, seed: int) -> WaveRNN:
    """WaveRNN with random weights: the ``TACOTRON2_WAVERNN_*`` bundles' size or tiny."""
    params: dict[str, Any] = {
        "upsample_scales": [5, 5, 11],
        "n_classes": 256,
        "hop_length": 275,
        "n_res_block": 10,
        "n_rnn": 512,
        "n_fc": 512,
        "kernel_size": 5,
        "n_freq": 80,
        "n_hidden": 128,
        "n_output": 128,
    }
    if size == "tiny":
        params.update(n_res_block=1, n_rnn=32, n_fc=32, n_hidden=16, n_output=16)
    with seeded(seed):
        return WaveRNN(**params).eval()
