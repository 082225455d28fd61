"""DeepSpeech2 as deepspeech.pytorch builds it, and its checkpoints.

The architecture (our own implementation, with deepspeech.pytorch's module names so that its
state dicts load as they are): a 2-D convolutional front end over a log spectrogram (two
conv + batch-norm + hardtanh blocks, time stride 2), a stack of LSTM/GRU/RNN layers
(bidirectional ones sum their two directions; layers after the first batch-normalise
their input), for unidirectional models a look-ahead convolution, and a batch-normalised
linear layer to the labels. Its input is ``log1p`` of the STFT magnitude (window
``sample_rate * window_size`` samples, hop ``sample_rate * window_stride``, Hamming),
normalised to zero mean and unit variance per input, as deepspeech.pytorch's parser does.

Checkpoints: the ``.pth`` package (``state_dict``, ``labels``, ``audio_conf``, ``rnn_type``,
``hidden_size``, ``hidden_layers``, ``bidirectional``) and the Lightning ``.ckpt``
(``state_dict``, ``hyper_parameters`` with ``labels``, ``model_cfg``, ``spect_cfg``), read by
:func:`modelplex_speech.checkpoints.read_package` without running pickled code. The layer
sizes are read from the state dict itself, and checked against the package's config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelplex import ModelLoadError, WeightsNotFoundError, WeightsSource
from modelplex_speech.checkpoints import plain, read_package
from modelplex_speech.torch_ctc import TorchCTC

__all__ = ["DS2Config", "DeepSpeech2", "DeepSpeech2Model", "LABELS", "build_ds2", "load_ds2_checkpoint"]

LABELS = tuple("_'ABCDEFGHIJKLMNOPQRSTUVWXYZ ")
"""deepspeech.pytorch's English labels (its labels.json): the blank ``_`` first, space last."""


@dataclass(frozen=True)
class DS2Config:
    """What builds a DeepSpeech2 and its features."""

    labels: tuple[str, ...] = LABELS
    rnn_type: str = "lstm"
    hidden_size: int = 1024
    hidden_layers: int = 5
    bidirectional: bool = True
    lookahead_context: int = 20
    sample_rate: int = 16000
    window_size: float = 0.02
    window_stride: float = 0.01
    window: str = "hamming"

    @property
    def n_fft(self) -> int:
        return int(self.sample_rate * self.window_size)

    @property
    def hop(self) -> int:
        return int(self.sample_rate * self.window_stride)


def build_ds2(cfg: DS2Config) -> Any:
    """The module, random weights."""
    import torch
    from torch import nn

    rnns = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

    class SequenceWise(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t, n = x.size(0), x.size(1)
            return self.module(x.reshape(t * n, -1)).view(t, n, -1)

    class MaskConv(nn.Module):  # deepspeech.pytorch's name; equal-length batches need no mask
        def __init__(self, seq_module: nn.Module) -> None:
            super().__init__()
            self.seq_module = seq_module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.seq_module(x)

    class BatchRNN(nn.Module):
        def __init__(self, input_size: int, batch_norm: bool) -> None:
            super().__init__()
            self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
            self.rnn = rnns[cfg.rnn_type](
                input_size=input_size, hidden_size=cfg.hidden_size, bidirectional=cfg.bidirectional, bias=True
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.batch_norm is not None:
                x = self.batch_norm(x)
            x, _ = self.rnn(x)
            if cfg.bidirectional:  # (T, N, 2H) -> (T, N, H) by sum
                x = x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)
            return x

    class Lookahead(nn.Module):
        def __init__(self, n_features: int, context: int) -> None:
            super().__init__()
            self.pad = (0, context - 1)
            self.conv = nn.Conv1d(n_features, n_features, kernel_size=context, groups=n_features, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.pad(x.permute(1, 2, 0), pad=self.pad, value=0)
            return self.conv(x).permute(2, 0, 1).contiguous()

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = MaskConv(
                nn.Sequential(
                    nn.Conv2d(1, 32, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
                    nn.BatchNorm2d(32),
                    nn.Hardtanh(0, 20, inplace=True),
                    nn.Conv2d(32, 32, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
                    nn.BatchNorm2d(32),
                    nn.Hardtanh(0, 20, inplace=True),
                )
            )
            size = math.floor(cfg.n_fft / 2) + 1
            size = math.floor((size + 2 * 20 - 41) / 2 + 1)
            size = math.floor((size + 2 * 10 - 21) / 2 + 1)
            self.rnns = nn.Sequential(
                BatchRNN(size * 32, batch_norm=False),
                *(BatchRNN(cfg.hidden_size, batch_norm=True) for _ in range(cfg.hidden_layers - 1)),
            )
            self.lookahead = (
                None
                if cfg.bidirectional
                else nn.Sequential(Lookahead(cfg.hidden_size, cfg.lookahead_context), nn.Hardtanh(0, 20, inplace=True))
            )
            self.fc = nn.Sequential(
                SequenceWise(
                    nn.Sequential(
                        nn.BatchNorm1d(cfg.hidden_size), nn.Linear(cfg.hidden_size, len(cfg.labels), bias=False)
                    )
                )
            )

        def forward(self, spect: torch.Tensor) -> torch.Tensor:
            """(N, 1, freq, time) spectrogram to (N, frames, labels) probabilities."""
            x = self.conv(spect)
            n, c, d, t = x.size()
            x = x.view(n, c * d, t).permute(2, 0, 1).contiguous()  # (T, N, H)
            for rnn in self.rnns:
                x = rnn(x)
            if self.lookahead is not None:
                x = self.lookahead(x)
            return self.fc(x).transpose(0, 1).softmax(dim=-1)

    return Model()


DeepSpeech2Model = build_ds2


def _rnn_type(state: dict[str, Any], hidden: int) -> str:
    rows = state["rnns.0.rnn.weight_hh_l0"].shape[0]
    return {4: "lstm", 3: "gru", 1: "rnn"}.get(rows // hidden, "?")


def _config_from(path: Path, package: dict[str, Any], state: dict[str, Any]) -> DS2Config:
    """The architecture from the state dict, the labels and spectrogram from the package."""
    hp = package.get("hyper_parameters") or {}
    labels = package.get("labels", hp.get("labels"))
    audio = package.get("audio_conf") or hp.get("spect_cfg") or {}
    if labels is None:
        raise ModelLoadError(f"checkpoint {path} has no labels (neither 'labels' nor hyper_parameters.labels)")
    labels = tuple(labels) if not isinstance(labels, str) else tuple(labels)
    hidden = int(state["rnns.0.rnn.weight_hh_l0"].shape[1])
    layers = len({k.split(".")[1] for k in state if k.startswith("rnns.")})
    window = str(audio.get("window", "hamming")).rsplit(".", 1)[-1].lower()
    cfg = DS2Config(
        labels=labels,
        rnn_type=_rnn_type(state, hidden),
        hidden_size=hidden,
        hidden_layers=layers,
        bidirectional="rnns.0.rnn.weight_hh_l0_reverse" in state,
        lookahead_context=int(state["lookahead.0.conv.weight"].shape[-1]) if "lookahead.0.conv.weight" in state else 20,
        sample_rate=int(audio.get("sample_rate", 16000)),
        window_size=float(audio.get("window_size", 0.02)),
        window_stride=float(audio.get("window_stride", 0.01)),
        window=window,
    )
    if cfg.rnn_type == "?":
        raise ModelLoadError(f"checkpoint {path}: cannot tell the RNN type from rnns.0.rnn.weight_hh_l0")
    if cfg.window != "hamming":
        raise ModelLoadError(f"checkpoint {path}: spectrogram window {window!r} is not supported (hamming is)")
    declared = package.get("hidden_size") or (hp.get("model_cfg") or {}).get("hidden_size")
    if declared is not None and int(declared) != hidden:
        raise ModelLoadError(f"checkpoint {path}: hidden_size {declared} does not match its weights ({hidden})")
    return cfg


def load_ds2_checkpoint(path: Path) -> tuple[DS2Config, Any]:
    """The config and module of a deepspeech.pytorch ``.pth`` package or Lightning ``.ckpt``."""
    package = plain(read_package(path))
    if not isinstance(package, dict) or not isinstance(package.get("state_dict"), dict):
        raise ModelLoadError(f"checkpoint {path} is not a deepspeech.pytorch package: it has no state_dict")
    state = package["state_dict"]
    if "rnns.0.rnn.weight_hh_l0" not in state:
        raise ModelLoadError(f"checkpoint {path} does not hold a DeepSpeech2 (no rnns.0.rnn.weight_hh_l0)")
    cfg = _config_from(path, package, state)
    module = build_ds2(cfg)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"checkpoint {path} does not fit DeepSpeech2 ({cfg}): {e}") from e
    return cfg, module


class DeepSpeech2(TorchCTC):
    """deepspeech.pytorch's DeepSpeech2: 20 ms frames (the front end's time stride 2)."""

    def build(self) -> Any:
        import torch

        weights = self.ctx.weights
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            cfg, module = load_ds2_checkpoint(Path(weights.path))
        elif weights.source is WeightsSource.RANDOM:
            s = self.ctx.settings
            cfg = DS2Config(hidden_size=s.hidden_size, hidden_layers=s.hidden_layers)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                module = build_ds2(cfg)
        else:
            raise WeightsNotFoundError(
                "deepspeech2 has no pretrained weights of its own: give a deepspeech.pytorch checkpoint "
                '(weights = "/path/librispeech_pretrained_v3.ckpt" or a .pth package), or weights = "random"'
            )
        self.cfg = cfg
        self.labels = cfg.labels
        self.blank = cfg.labels.index("_") if "_" in cfg.labels else 0
        self.word_delimiter = " "
        self.sample_rate = cfg.sample_rate
        self.samples_per_frame = 2 * cfg.hop
        self._window: Any = None
        return module

    def spectrogram(self, batch: Any) -> Any:
        """(B, N) samples to the (B, 1, freq, time) normalised log spectrogram."""
        import torch

        cfg = self.cfg
        if self._window is None or self._window.device != batch.device:
            self._window = torch.hamming_window(cfg.n_fft, periodic=True, device=batch.device)
        stft = torch.stft(
            batch,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop,
            win_length=cfg.n_fft,
            window=self._window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        spect = torch.log1p(stft.abs())
        mean = spect.mean(dim=(1, 2), keepdim=True)
        std = spect.std(dim=(1, 2), keepdim=True)
        return ((spect - mean) / std).unsqueeze(1)

    def forward(self, batch: Any) -> Any:
        return self.module(self.spectrogram(batch))
