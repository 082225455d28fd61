"""A served pairing: Tacotron 2 and a vocoder on one device, as a ``SpeechSynthesizer``.

A step decodes ``frames_per_step`` more frames of every sentence of the step together,
then vocodes, for each sentence, the pieces whose frames are all there: a piece of
``piece_frames`` frames is vocoded from a window with ``context`` frames on each side
(the vocoder's), once the postnet of that window is final, and handed out with half a
frame of overlap on each side for the server to cross-fade. So a long sentence's audio
starts after its first piece, and its pieces join without seams.

A speaking rate other than 1 stretches the final mel along time before the vocoder
(:mod:`modelplex_tts.rate`): pieces are then counted in stretched frames, and each window
is stretched from the decoded frames it reads, so a piece needs those (and the postnet's
context past them) decoded, as at rate 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelplex import LoadContext, ModelLoadError, WeightsSource
from modelplex.kit import module_bytes, prepack_linears
from modelplex.tasks.speech_synthesis import AudioPiece, PreparedText, SpeechSynthesizer, SynthesisOptions
from modelplex_tts.pairing import Pairing
from modelplex_tts.processors import TextProcessor, text_processor
from modelplex_tts.rate import TimeStretch
from modelplex_tts.settings import TTSSettings
from modelplex_tts.tacotron import TacotronDecoder, Utterance
from modelplex_tts.vocoders import GriffinLimVocoder, Vocoder, WaveGlowVocoder, WaveRNNVocoder
from modelplex_tts.waveglow import load_waveglow
from modelplex_tts.weights import (
    NVIDIA_FILES,
    TORCHAUDIO_URL,
    build_tacotron2,
    build_wavernn,
    hub_file,
    random_tacotron2,
    random_waveglow,
    random_wavernn,
    read_checkpoint,
)

log = logging.getLogger(__name__)

__all__ = ["Sentence", "TacotronSynthesizer"]


@dataclass(eq=False)
class Sentence:
    """One sentence being synthesized: the decoder's utterance and the vocoder's generator."""

    utterance: Utterance
    vocoder_generator: torch.Generator
    stretch: TimeStretch | None = None
    """The speaking rate's frame mapping; None at rate 1."""
    vocoded: int = 0
    """Frames (stretched ones, with a speaking rate) already vocoded into pieces."""
    done: bool = False


class TacotronSynthesizer(SpeechSynthesizer):
    """Tacotron 2 (torchaudio) with Griffin-Lim, WaveRNN or WaveGlow, stepped by the server."""

    sample_rate = 22050
    supports_speaking_rate = True
    """Every vocoder here is mel-conditioned: the rate stretches the mel (:mod:`modelplex_tts.rate`)."""

    def __init__(self, pairing: Pairing, ctx: LoadContext[TTSSettings]) -> None:
        self.pairing = pairing
        self.ctx = ctx
        self.settings = ctx.settings
        self.device = ctx.device
        self.description = pairing.title
        self.decoder: TacotronDecoder | None = None
        self.vocoder: Vocoder | None = None
        self.processor: TextProcessor | None = None

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        tacotron, layout = self._tacotron()
        n_symbol = int(tacotron.embedding.weight.shape[0])
        name = self.settings.text_processor
        if name == "auto" and layout == "nvidia":
            name = "nvidia"
        self.processor = text_processor(name, n_symbol, allow_download=self.ctx.weights.allow_download)
        self.vocoder = self._vocoder().to(self.device)
        if self.vocoder.hop_length and tacotron.decoder.n_mels != 80:
            raise ModelLoadError(f"the vocoders take 80 mel bands; this Tacotron 2 makes {tacotron.decoder.n_mels}")
        invariant = self.settings.batch_invariant
        if invariant is None:
            invariant = self.device.startswith("cuda")
        rows = int(getattr(self.ctx.task_settings, "max_batch_size", 1)) if invariant else 0
        tacotron = tacotron.to(self.device)
        if self.settings.cpu_prepack and self.device == "cpu":
            # Both are this plugin's own known modules (torchaudio's Tacotron 2 and WaveRNN, our
            # WaveGlow), which call their layers only: no check pass is needed.
            modules = [tacotron, getattr(self.vocoder, "model", None)]  # Griffin-Lim has no module
            packed = sum(prepack_linears(m, rows=max(rows, 1)) for m in modules if isinstance(m, torch.nn.Module))
            log.info("%s: %d layers packed for oneDNN", self.ctx.model_name, packed)
        self.decoder = TacotronDecoder(tacotron, self.settings.gate_threshold, rows)
        log.info(
            "%s: Tacotron 2 (%s layout, %s symbols) + %s on %s",
            self.ctx.model_name,
            layout,
            self.processor.name,
            self.vocoder.name,
            self.device,
        )

    def _tacotron(self) -> tuple[Any, str]:
        weights = self.ctx.weights
        if weights.source is WeightsSource.RANDOM:
            n_symbol = {"nvidia": 148, "phonemes": 96}.get(self.settings.text_processor, 38)
            return random_tacotron2(n_symbol, self.settings.random_size, self.settings.seed), "torchaudio"
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            path = weights.path
        elif self.pairing.vocoder == "waveglow" or self.ctx.variant.weights.startswith("nvidia"):
            path = hub_file(*NVIDIA_FILES["tacotron2"], weights.allow_download)
        else:
            path = self._bundle_file("_tacotron2_path")
        return build_tacotron2(read_checkpoint(path, "Tacotron 2"), path)

    def _bundle_file(self, attribute: str) -> Path:
        """A file of the variant's torchaudio bundle, from the torch hub cache."""
        import torchaudio.pipelines

        bundle = getattr(torchaudio.pipelines, self.ctx.variant.weights)
        filename = getattr(bundle, attribute)
        return hub_file(filename, f"{TORCHAUDIO_URL}/{filename}", self.ctx.weights.allow_download)

    def _vocoder(self) -> Vocoder:
        s, weights, kind = self.settings, self.ctx.weights, self.pairing.vocoder
        if kind == "griffin-lim":
            return GriffinLimVocoder(s.griffin_lim_iterations)
        path: Path | None = None
        if s.vocoder_weights is not None:
            path = Path(s.vocoder_weights).expanduser()
        elif weights.source is WeightsSource.CHECKPOINT:
            raise ModelLoadError(
                f"weights is a Tacotron 2 checkpoint; name the {kind} checkpoint too: settings.vocoder_weights"
            )
        elif weights.source is WeightsSource.PRETRAINED:
            path = (
                hub_file(*NVIDIA_FILES["waveglow"], weights.allow_download)
                if kind == "waveglow"
                else self._bundle_file("_wavernn_path")
            )
        if kind == "waveglow":
            model = load_waveglow(path) if path else random_waveglow(s.random_size, s.seed)
            return WaveGlowVocoder(model, s.sigma, s.denoiser_strength)
        wavernn = (
            build_wavernn(read_checkpoint(path, "WaveRNN"), path) if path else random_wavernn(s.random_size, s.seed)
        )
        return WaveRNNVocoder(wavernn)

    def warmup(self) -> None:
        sentence = self.start(self.prepare("Hello."), SynthesisOptions())
        try:
            self.step([sentence])
        finally:
            self.release(sentence)

    def unload(self) -> None:
        self.decoder = self.vocoder = self.processor = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        if self.decoder is None or self.vocoder is None:
            return 0
        return module_bytes(self.decoder.model) + self.vocoder.memory_bytes()

    # -- synthesis ----------------------------------------------------------------------------

    def prepare(self, text: str) -> PreparedText:
        assert self.processor is not None, "load() first"
        return self.processor.prepare(text)

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.settings.seed + offset)

    def start(self, prepared: PreparedText, options: SynthesisOptions) -> Sentence:
        assert self.decoder is not None, "load() first"
        s = self.settings
        limit = s.max_decoder_steps
        if s.max_frames_per_char > 0:
            limit = max(1, min(limit, math.ceil(len(prepared.tokens) * s.max_frames_per_char)))
        utterance = self.decoder.start(prepared.tokens, limit, self._generator(0))
        rate = options.speaking_rate
        return Sentence(utterance, self._generator(1), TimeStretch(rate) if rate != 1.0 else None)

    def step(self, utterances: Sequence[Sentence]) -> list[list[AudioPiece] | Exception]:
        assert self.decoder is not None, "load() first"
        self.decoder.decode([u.utterance for u in utterances], self.settings.frames_per_step)
        out: list[list[AudioPiece] | Exception] = []
        for sentence in utterances:
            try:
                out.append(self._pieces(sentence))
            except Exception as e:  # this sentence's vocoding failed; the others go on
                out.append(e)
        return out

    def _pieces(self, sentence: Sentence) -> list[AudioPiece]:
        """The pieces of the sentence whose frames (and postnet context) are all decoded."""
        assert self.decoder is not None and self.vocoder is not None
        u, hop, context = sentence.utterance, self.vocoder.hop_length, self.vocoder.context
        stretch = sentence.stretch
        overlap = hop // 2  # on each side of a join: one frame cross-faded
        size = self.settings.piece_frames
        decoded = len(u.frames)
        # Frames to vocode, known once the sentence is finished (stretched with a rate).
        total = (stretch.frames(decoded) if stretch else decoded) if u.finished else None
        pieces = []
        while not sentence.done:
            b0 = sentence.vocoded
            if total is not None:
                b1 = b0 + size if size else total
                last = size == 0 or b1 + context >= total
            elif size and self._reads(stretch, b0 + size + context) + self.decoder.postnet_context <= decoded:
                b1, last = b0 + size, False
            else:
                break
            if last:
                assert total is not None
                b1 = total
            w0, w1 = max(0, b0 - context), b1 if last else b1 + context
            audio = self.vocoder.vocode(self._mel(sentence, w0, w1), sentence.vocoder_generator)
            s0 = b0 * hop - overlap if b0 else 0
            s1 = b1 * hop if last else b1 * hop + overlap
            pieces.append(AudioPiece(audio[s0 - w0 * hop : s1 - w0 * hop], 0 if last else 2 * overlap, last))
            sentence.vocoded = b1
            sentence.done = last
        return pieces

    @staticmethod
    def _reads(stretch: TimeStretch | None, end: int) -> int:
        """The decoded frames that the frames before ``end`` (stretched ones with a rate) read."""
        return stretch.sources(0, end)[1] if stretch else end

    def _mel(self, sentence: Sentence, start: int, end: int) -> torch.Tensor:
        """The final mel of frames ``[start, end)``, stretched to the speaking rate."""
        assert self.decoder is not None
        u, stretch = sentence.utterance, sentence.stretch
        if stretch is None:
            return self.decoder.postnet_window(u, start, end)
        decoded = len(u.frames) if u.finished else None
        lo, hi = stretch.sources(start, end, decoded)
        return stretch.stretch(self.decoder.postnet_window(u, lo, hi), lo, start, end, decoded)

    def release(self, utterance: Sentence) -> None:
        utterance.utterance.frames.clear()
        utterance.utterance.mel = None
