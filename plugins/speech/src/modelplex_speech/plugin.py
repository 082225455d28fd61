"""The modelplex entry point: registers the speech-recognition specs.

Importing this module imports neither torch nor torchaudio nor transformers: each model
module is imported by its factory, when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from modelplex import LoadContext, ModelSpec, Variant, hookimpl
from modelplex.tasks.speech_recognition import SpeechRecognitionMeta
from modelplex_speech.settings import BundleSettings, DeepSpeechSettings, HFSettings

__all__ = ["BUNDLES", "build_specs", "register_models"]

TASK = "speech_recognition"

BUNDLES: tuple[tuple[str, str, str, int], ...] = (
    # spec name, torchaudio bundle, language, parameters
    ("wav2vec2-base-10m", "WAV2VEC2_ASR_BASE_10M", "en", 94_400_000),
    ("wav2vec2-base-100h", "WAV2VEC2_ASR_BASE_100H", "en", 94_400_000),
    ("wav2vec2-base-960h", "WAV2VEC2_ASR_BASE_960H", "en", 94_400_000),
    ("wav2vec2-large-10m", "WAV2VEC2_ASR_LARGE_10M", "en", 315_500_000),
    ("wav2vec2-large-100h", "WAV2VEC2_ASR_LARGE_100H", "en", 315_500_000),
    ("wav2vec2-large-960h", "WAV2VEC2_ASR_LARGE_960H", "en", 315_500_000),
    ("wav2vec2-large-lv60k-10m", "WAV2VEC2_ASR_LARGE_LV60K_10M", "en", 315_500_000),
    ("wav2vec2-large-lv60k-100h", "WAV2VEC2_ASR_LARGE_LV60K_100H", "en", 315_500_000),
    ("wav2vec2-large-lv60k-960h", "WAV2VEC2_ASR_LARGE_LV60K_960H", "en", 315_500_000),
    ("voxpopuli-base-10k-en", "VOXPOPULI_ASR_BASE_10K_EN", "en", 94_400_000),
    ("voxpopuli-base-10k-es", "VOXPOPULI_ASR_BASE_10K_ES", "es", 94_400_000),
    ("voxpopuli-base-10k-de", "VOXPOPULI_ASR_BASE_10K_DE", "de", 94_400_000),
    ("voxpopuli-base-10k-fr", "VOXPOPULI_ASR_BASE_10K_FR", "fr", 94_400_000),
    ("voxpopuli-base-10k-it", "VOXPOPULI_ASR_BASE_10K_IT", "it", 94_400_000),
)

HF_VARIANTS: tuple[tuple[str, str, int], ...] = (
    ("base-960h", "facebook/wav2vec2-base-960h", 94_400_000),
    ("large-960h-lv60-self", "facebook/wav2vec2-large-960h-lv60-self", 315_500_000),
)


def _bundle(bundle: str, ctx: LoadContext[Any]) -> Any:
    from modelplex_speech.bundles import BundleWav2Vec2

    return BundleWav2Vec2(ctx, bundle)


def _hf(ctx: LoadContext[Any]) -> Any:
    from modelplex_speech.hf import HFWav2Vec2

    return HFWav2Vec2(ctx, ctx.variant.weights or None)


def _deepspeech(ctx: LoadContext[Any]) -> Any:
    from modelplex_speech.deepspeech import TorchaudioDeepSpeech

    return TorchaudioDeepSpeech(ctx)


def _deepspeech2(ctx: LoadContext[Any]) -> Any:
    from modelplex_speech.deepspeech2 import DeepSpeech2

    return DeepSpeech2(ctx)


def _demo(ctx: LoadContext[Any]) -> Any:
    from modelplex_speech.demo import demo_recognizer

    return demo_recognizer(ctx)


def build_specs() -> list[ModelSpec]:
    """The specs this plugin registers."""
    specs = [
        ModelSpec(
            name=name,
            task=TASK,
            factory=partial(_bundle, bundle),
            variants=(
                Variant(
                    "torchaudio",
                    weights=f"torchaudio.pipelines.{bundle}",
                    meta=SpeechRecognitionMeta(
                        sample_rate=16000, languages=(lang,), num_params=params, recipe="torchaudio.pipelines"
                    ),
                ),
            ),
            settings=BundleSettings,
            description=f"Wav2Vec 2.0 CTC, torchaudio.pipelines.{bundle} (weights from the torch hub cache)",
        )
        for name, bundle, lang, params in BUNDLES
    ]
    specs.append(
        ModelSpec(
            name="hf-wav2vec2",
            task=TASK,
            factory=_hf,
            variants=tuple(
                Variant(
                    name,
                    weights=hub_id,
                    meta=SpeechRecognitionMeta(
                        sample_rate=16000,
                        languages=("en",),
                        num_params=params,
                        recipe=f"https://huggingface.co/{hub_id}",
                    ),
                )
                for name, hub_id, params in HF_VARIANTS
            ),
            settings=HFSettings,
            accepts_weight_ids=True,
            description="Any Hugging Face Wav2Vec2ForCTC with its processor: weights = a folder saved with "
            'save_pretrained, or a hub id ("org/model") in the local cache',
        )
    )
    specs.append(
        ModelSpec(
            name="deepspeech",
            task=TASK,
            factory=_deepspeech,
            variants=(Variant("default", weights="", meta=SpeechRecognitionMeta(sample_rate=16000)),),
            settings=DeepSpeechSettings,
            description="torchaudio.models.DeepSpeech over log-mel/MFCC features: weights = a modelplex.deepspeech/1 "
            'checkpoint (.safetensors or .pt), or "random"',
        )
    )
    specs.append(
        ModelSpec(
            name="deepspeech2",
            task=TASK,
            factory=_deepspeech2,
            variants=(Variant("default", weights="", meta=SpeechRecognitionMeta(sample_rate=16000)),),
            settings=DeepSpeechSettings,
            description='DeepSpeech2 (deepspeech.pytorch): weights = its .pth package or Lightning .ckpt, or "random"',
        )
    )
    specs.append(
        ModelSpec(
            name="tiny-wav2vec2",
            task=TASK,
            factory=_demo,
            variants=(Variant("random", weights="", meta=SpeechRecognitionMeta(sample_rate=16000)),),
            description="A 2-layer Wav2Vec 2.0 CTC with random weights and a real character vocabulary: "
            'weights = "random" '
            "only; its transcripts are meaningless (the demo profile serves it)",
        )
    )
    return specs


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register every speech-recognition spec."""
    for spec in build_specs():
        register(spec)
