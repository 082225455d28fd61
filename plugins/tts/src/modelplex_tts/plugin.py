"""The modelplex entry point ``tts``: registers the Tacotron 2 pairings.

Importing this module imports neither torch nor torchaudio: the model module is imported
by the factory, when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from modelplex import LoadContext, ModelSpec, Task, Variant, hookimpl
from modelplex.tasks.speech_synthesis import SpeechSynthesisMeta
from modelplex_tts.pairing import Pairing
from modelplex_tts.settings import TTSSettings

if TYPE_CHECKING:
    from modelplex_tts.model import TacotronSynthesizer

__all__ = ["PAIRINGS", "build_specs", "register_models"]

_TACOTRON2 = 28_190_000
_RECIPE = "https://pytorch.org/audio/stable/pipelines.html#tacotron2-text-to-speech"
_NVIDIA = "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/SpeechSynthesis/Tacotron2"


def _meta(processor: str, vocoder: str, params: int, recipe: str) -> SpeechSynthesisMeta:
    return SpeechSynthesisMeta(
        num_params=params, recipe=recipe, sample_rate=22050, text_processor=processor, vocoder=vocoder
    )


# (spec name, vocoder, title, variants)
PAIRINGS: tuple[tuple[str, str, str, tuple[Variant, ...]], ...] = (
    (
        "tacotron2-griffinlim",
        "griffin-lim",
        "Tacotron 2 + Griffin-Lim",
        (
            Variant(
                "CHAR_LJSPEECH",
                "TACOTRON2_GRIFFINLIM_CHAR_LJSPEECH",
                _meta("characters", "griffin-lim", _TACOTRON2, _RECIPE),
                "torchaudio's character model, LJSpeech",
            ),
            Variant(
                "PHONE_LJSPEECH",
                "TACOTRON2_GRIFFINLIM_PHONE_LJSPEECH",
                _meta("phonemes", "griffin-lim", _TACOTRON2, _RECIPE),
                "torchaudio's phoneme model, LJSpeech (needs DeepPhonemizer)",
            ),
        ),
    ),
    (
        "tacotron2-wavernn",
        "wavernn",
        "Tacotron 2 + WaveRNN",
        (
            Variant(
                "CHAR_LJSPEECH",
                "TACOTRON2_WAVERNN_CHAR_LJSPEECH",
                _meta("characters", "wavernn", _TACOTRON2 + 4_480_000, _RECIPE),
                "torchaudio's character model and 8-bit WaveRNN, LJSpeech",
            ),
            Variant(
                "PHONE_LJSPEECH",
                "TACOTRON2_WAVERNN_PHONE_LJSPEECH",
                _meta("phonemes", "wavernn", _TACOTRON2 + 4_480_000, _RECIPE),
                "torchaudio's phoneme model and 8-bit WaveRNN, LJSpeech (needs DeepPhonemizer)",
            ),
        ),
    ),
    (
        "tacotron2-waveglow",
        "waveglow",
        "Tacotron 2 + WaveGlow",
        (
            Variant(
                "NVIDIA_LJSPEECH",
                "nvidia_tacotron2pyt_fp32_20190427+nvidia_waveglowpyt_fp32_20190427",
                _meta("nvidia", "waveglow", _TACOTRON2 + 268_000_000, _NVIDIA),
                "NVIDIA DeepLearningExamples' Tacotron 2 and WaveGlow (512 channels), LJSpeech",
            ),
        ),
    ),
)


def _build(pairing: Pairing, ctx: LoadContext[TTSSettings]) -> TacotronSynthesizer:
    from modelplex_tts.model import TacotronSynthesizer

    return TacotronSynthesizer(pairing, ctx)


def _spec(name: str, vocoder: str, title: str, variants: tuple[Variant, ...]) -> ModelSpec:
    what = (
        f"{title}: torchaudio's Tacotron 2 decoded step by step, sentences of concurrent calls batched. "
        'weights = "pretrained" (the variant\'s files in the torch hub cache), a Tacotron 2 checkpoint '
        "(torchaudio's or DeepLearningExamples' layout; settings.vocoder_weights for the vocoder's), "
        'or "random"'
    )
    return ModelSpec(
        name=name,
        task=Task.SPEECH_SYNTHESIS,
        factory=partial(_build, Pairing(name, vocoder, title)),
        variants=variants,
        settings=TTSSettings,
        description=what,
    )


def build_specs() -> list[ModelSpec]:
    """The specs this plugin registers, one per pairing."""
    return [_spec(*p) for p in PAIRINGS]


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register the Tacotron 2 pairings (Griffin-Lim, WaveRNN, WaveGlow)."""
    for spec in build_specs():
        register(spec)
