"""The vocoders: a (log) mel spectrogram in, audio out, each at 22 050 Hz.

- :class:`GriffinLimVocoder`: torchaudio's ``InverseMelScale`` and Griffin-Lim, as in the
  ``TACOTRON2_GRIFFINLIM_*`` bundles (fast; no weights). Its phases start from zero rather
  than at random, so that the same mel always gives the same audio.
- :class:`WaveRNNVocoder`: ``torchaudio.models.WaveRNN``, sampling each sample in turn (the
  ``TACOTRON2_WAVERNN_*`` bundles' vocoder; about 24 times slower than real time on a CPU core:
  a GPU's work). Its sampling draws from the sentence's generator.
- :class:`WaveGlowVocoder`: this package's WaveGlow (:mod:`modelplex_tts.waveglow`), with
  NVIDIA's denoiser.

Every vocoder turns ``F`` frames into exactly ``F * hop_length`` samples, and says how many
frames of ``context`` on each side a window needs so that the middle of its audio is
usable: the model vocodes a long sentence in overlapping windows and the server
cross-fades them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
import torchaudio

from modelplex.kit import module_bytes
from modelplex_tts.waveglow import WaveGlow

__all__ = ["GriffinLimVocoder", "Vocoder", "WaveGlowVocoder", "WaveRNNVocoder"]

SAMPLE_RATE = 22050


def _fit(audio: torch.Tensor, n: int) -> torch.Tensor:
    """``audio`` cut or zero-padded to ``n`` samples."""
    return audio[:n] if audio.numel() >= n else F.pad(audio, (0, n - audio.numel()))


class Vocoder(ABC):
    """A mel spectrogram ``(n_mels, frames)`` (natural log of magnitudes) into audio."""

    name: str
    sample_rate: int = SAMPLE_RATE
    hop_length: int = 256
    context: int = 4
    """Frames of mel on each side of a window's middle that its vocoding needs."""

    @abstractmethod
    def vocode(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``frames * hop_length`` samples in [-1, 1] (1-D, on the mel's device)."""

    def to(self, device: str) -> Vocoder:
        return self

    def memory_bytes(self) -> int:
        return 0


class GriffinLimVocoder(Vocoder):
    """torchaudio's Griffin-Lim vocoder with the bundles' parameters (n_fft 1024, hop 256,
    80 slaney mel bands up to 8 kHz)."""

    name = "griffin-lim"
    context = 8

    def __init__(self, n_iter: int = 32, n_fft: int = 1024, n_mels: int = 80) -> None:
        self.n_iter = n_iter
        self.n_fft = n_fft
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1,
            n_mels=n_mels,
            sample_rate=self.sample_rate,
            f_min=0.0,
            f_max=8000.0,
            mel_scale="slaney",
            norm="slaney",
        )
        self.window = torch.hann_window(n_fft)

    def to(self, device: str) -> GriffinLimVocoder:
        self.inverse_mel = self.inverse_mel.to(device)
        self.window = self.window.to(device)
        return self

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        spec = self.inverse_mel(torch.exp(mel))
        n = mel.shape[-1] * self.hop_length
        # A centred STFT of F frames spans (F - 1) hops; the last hop is padded with zeros.
        audio = torchaudio.functional.griffinlim(
            spec,
            self.window,
            self.n_fft,
            self.hop_length,
            self.n_fft,
            1.0,
            self.n_iter,
            0.99,
            n - self.hop_length,
            False,
        )
        return _fit(audio, n)


class WaveRNNVocoder(Vocoder):
    """``torchaudio.models.WaveRNN`` as the ``TACOTRON2_WAVERNN_*`` bundles use it (mel
    scaled to [0, 1] over -100 dB, 8-bit mu-law samples), sampling from the sentence's
    generator."""

    name = "wavernn"
    hop_length = 275
    context = 4

    def __init__(self, model: torchaudio.models.WaveRNN, min_level_db: float = -100.0) -> None:
        self.model = model.eval()
        self.hop_length = int(model.hop_length)
        self.min_level_db = min_level_db

    def to(self, device: str) -> WaveRNNVocoder:
        self.model = self.model.to(device)
        return self

    def memory_bytes(self) -> int:
        return module_bytes(self.model)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        m = self.model
        spec = 20 * torch.log10(torch.clamp(torch.exp(mel), min=1e-5))
        spec = torch.clamp((self.min_level_db - spec) / self.min_level_db, min=0, max=1)[None]
        spec = F.pad(spec, (m._pad, m._pad))
        spec, aux = m.upsample(spec)
        aux_split = [aux[:, m.n_aux * i : m.n_aux * (i + 1), :] for i in range(4)]
        h1 = spec.new_zeros((1, 1, m.n_rnn))
        h2 = spec.new_zeros((1, 1, m.n_rnn))
        x = spec.new_zeros((1, 1))
        labels = []
        # torchaudio's WaveRNN.infer, step for step, with the sentence's own generator.
        for i in range(spec.shape[-1]):
            a1, a2, a3, a4 = (a[:, :, i] for a in aux_split)
            x = m.fc(torch.cat([x, spec[:, :, i], a1], dim=1))
            _, h1 = m.rnn1(x.unsqueeze(1), h1)
            x = x + h1[0]
            _, h2 = m.rnn2(torch.cat([x, a2], dim=1).unsqueeze(1), h2)
            x = x + h2[0]
            x = F.relu(m.fc1(torch.cat([x, a3], dim=1)))
            x = F.relu(m.fc2(torch.cat([x, a4], dim=1)))
            label = torch.multinomial(F.softmax(m.fc3(x), dim=1), 1, generator=generator).float()
            x = 2 * label / (2**m.n_bits - 1.0) - 1.0
            labels.append(label)
        waveform = torch.cat(labels, dim=1)[0]
        audio = torchaudio.functional.mu_law_decoding(waveform.int(), m.n_classes)
        return _fit(audio, mel.shape[-1] * self.hop_length)


class WaveGlowVocoder(Vocoder):
    """:class:`~modelplex_tts.waveglow.WaveGlow` sampled at ``sigma``, then NVIDIA's denoiser:
    the spectrum of the model's output for silence, times ``denoiser_strength``, subtracted."""

    name = "waveglow"
    context = 8

    def __init__(self, model: WaveGlow, sigma: float = 0.666, denoiser_strength: float = 0.01) -> None:
        self.model = model.eval()
        self.sigma = sigma
        self.strength = denoiser_strength
        self.hop_length = int(model.upsample.stride[0])
        self.window = torch.hann_window(1024)
        self.bias_spec: torch.Tensor | None = None

    def to(self, device: str) -> WaveGlowVocoder:
        self.model = self.model.to(device)
        self.window = self.window.to(device)
        if self.strength > 0:
            with torch.inference_mode():
                silence = self.model.upsample.weight.new_zeros((1, self.model.n_mel_channels, 88))
                bias_audio = self.model.infer(silence, sigma=0.0)[0]
                self.bias_spec = self._stft(bias_audio).abs()[:, :1]
        return self

    def memory_bytes(self) -> int:
        return module_bytes(self.model)

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, 1024, 256, 1024, self.window, center=True, return_complex=True)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        audio = self.model.infer(mel[None], sigma=self.sigma, generator=generator)[0]
        if self.bias_spec is not None and audio.numel() > 1024:
            spec = self._stft(audio)
            magnitude = torch.clamp(spec.abs() - self.bias_spec * self.strength, min=0.0)
            audio = torch.istft(
                torch.polar(magnitude, spec.angle()), 1024, 256, 1024, self.window, length=audio.numel()
            )
        return _fit(audio.clamp(-1.0, 1.0), mel.shape[-1] * self.hop_length)
