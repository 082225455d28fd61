"""Voice-activity detectors: the speech probability of each short frame of a stream.

:class:`SileroVad` runs silero-vad's own model (the TorchScript file its PyPI package
ships), frame by frame, with each stream's recurrent state kept in the stream's session;
:class:`EnergyVad` is the fallback (frame loudness against a threshold); :class:`NoVad`
says "speech" everywhere, so segments end only at the maximum length and the end of the
stream. Each runs on the instance's thread.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import threading
import warnings
from typing import Any

from modelplex.errors import ModelLoadError

__all__ = ["EnergyVad", "NoVad", "SileroVad", "Vad", "make_vad", "silero_available"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_SILERO: Any = None


class Vad:
    """A detector: ``frame`` samples at a time, each scored 0..1 (1 is speech)."""

    name = "none"
    frame = 512
    """Samples per frame."""

    def new_state(self) -> Any:
        """Per-stream state (the detector's memory of earlier frames)."""
        return None

    def scores(self, state: Any, frames: Any) -> tuple[list[float], Any]:
        """The speech probability of each row of ``frames`` ((k, frame) float32), in order,
        and the stream's state after them."""
        return [1.0] * len(frames), state


class NoVad(Vad):
    """Every frame is speech."""


class EnergyVad(Vad):
    """Speech where a frame's RMS level passes ``threshold_db`` dBFS (a soft step 6 dB wide)."""

    name = "energy"

    def __init__(self, sample_rate: int, threshold_db: float = -40.0) -> None:
        self.frame = max(1, round(sample_rate * 0.032))
        self.threshold_db = threshold_db

    def scores(self, state: Any, frames: Any) -> tuple[list[float], Any]:
        rms = frames.pow(2).mean(dim=1).sqrt().clamp_min(1e-10)
        db = (20 * rms.log10()).tolist()
        return [1 / (1 + math.exp(-(d - self.threshold_db) / 1.5)) for d in db], state


class SileroVad(Vad):
    """silero-vad (16 kHz: 512-sample frames; 8 kHz: 256), its state per stream."""

    name = "silero"

    def __init__(self, sample_rate: int) -> None:
        if sample_rate not in (8000, 16000):
            raise ModelLoadError(f"silero-vad takes 8 or 16 kHz audio; this model hears {sample_rate} Hz")
        jit = _silero()
        self._model = jit._model if sample_rate == 16000 else jit._model_8k
        self.frame = 512 if sample_rate == 16000 else 256
        self._context = 64 if sample_rate == 16000 else 32

    def new_state(self) -> Any:
        import torch

        return torch.zeros(1, self._context), torch.zeros(2, 1, 128)

    def scores(self, state: Any, frames: Any) -> tuple[list[float], Any]:
        import torch

        context, rnn = state
        out: list[float] = []
        with torch.inference_mode():
            for row in frames:
                x = torch.cat([context, row[None]], dim=1)
                prob, rnn = self._model(x, rnn)
                context = x[:, -self._context :]
                out.append(float(prob))
        return out, (context, rnn)


def silero_available() -> bool:
    """Whether the silero-vad package is installed."""
    try:
        importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _silero() -> Any:
    """silero-vad's TorchScript model, loaded once per process. Found through the package's
    file list rather than imported: importing ``silero_vad`` calls ``torch.set_num_threads(1)``
    for the whole process, which would slow every model on the server."""
    global _SILERO
    with _LOCK:
        if _SILERO is None:
            import torch

            try:
                dist = importlib.metadata.distribution("silero-vad")
            except importlib.metadata.PackageNotFoundError:
                raise ModelLoadError(
                    'vad = "silero" needs the silero-vad package (pip install silero-vad), or use vad = "energy"'
                ) from None
            files = [f for f in dist.files or () if f.name == "silero_vad.jit"]
            if not files:
                raise ModelLoadError("the installed silero-vad package has no silero_vad.jit")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                _SILERO = torch.jit.load(str(dist.locate_file(files[0])), map_location="cpu").eval()
        return _SILERO


def make_vad(kind: str, sample_rate: int) -> Vad:
    """The detector a model's settings name: ``auto`` is silero where it is installed and the
    model's rate suits it, else energy."""
    if kind == "auto":
        kind = "silero" if silero_available() and sample_rate in (8000, 16000) else "energy"
    if kind == "silero":
        return SileroVad(sample_rate)
    if kind == "energy":
        return EnergyVad(sample_rate)
    return NoVad()
