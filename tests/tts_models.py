"""Tiny Tacotron 2, WaveGlow and WaveRNN models with random weights, saved in the real
checkpoint layouts (torchaudio's state dict; DeepLearningExamples' dict with ``state_dict``
and ``config`` and ``module.`` prefixes), so that tests load them through the plugin's own
loading code, and a wrapper model that lets tests order events against the model's work.

Random Tacotron weights never stop by themselves: the tests' settings set the gate
threshold to 1 (never) and cap the frames per sentence.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

TINY_TACOTRON = {
    "symbol_embedding_dim": 32,
    "encoder_embedding_dim": 32,
    "encoder_n_convolution": 1,
    "decoder_rnn_dim": 48,
    "attention_rnn_dim": 48,
    "attention_hidden_dim": 16,
    "attention_location_n_filter": 4,
    "attention_location_kernel_size": 7,
    "prenet_dim": 32,
    "postnet_n_convolution": 2,
    "postnet_embedding_dim": 32,
}
TINY_WAVEGLOW = {
    "n_mel_channels": 80,
    "n_flows": 4,
    "n_group": 8,
    "n_early_every": 2,
    "n_early_size": 2,
    "WN_config": {"n_layers": 2, "kernel_size": 3, "n_channels": 16},
}
TINY_WAVERNN = {
    "upsample_scales": [5, 5, 11],
    "n_classes": 256,
    "hop_length": 275,
    "n_res_block": 1,
    "n_rnn": 16,
    "n_fc": 16,
    "kernel_size": 5,
    "n_freq": 80,
    "n_hidden": 8,
    "n_output": 8,
}
SETTINGS = {
    "gate_threshold": 1.0,
    "max_decoder_steps": 24,
    "frames_per_step": 4,
    "piece_frames": 8,
    "griffin_lim_iterations": 4,
    "batch_invariant": True,
}
"""Plugin settings that make a random Tacotron stop (24 frames a sentence, vocoded in pieces of
8), and keep a sentence's audio bit-identical whatever it is batched with (as on CUDA)."""


def save_tacotron(path: Path, *, n_symbol: int = 38, seed: int = 0, layout: str = "torchaudio") -> Path:
    """A tiny random Tacotron 2 saved as torchaudio (state dict) or DeepLearningExamples lays it out."""
    import torch
    from torchaudio.models import Tacotron2

    torch.manual_seed(seed)
    model = Tacotron2(n_symbol=n_symbol, **TINY_TACOTRON)
    sd = model.state_dict()
    if layout == "nvidia":
        sd = {f"module.{_nvidia_key(k)}": v for k, v in sd.items()}
        torch.save({"epoch": 1, "config": {"n_symbols": n_symbol}, "state_dict": sd}, path)
    else:
        torch.save(sd, path)
    return path


def _nvidia_key(key: str) -> str:
    """torchaudio's Tacotron 2 key as DeepLearningExamples' (ConvNorm.conv, LinearNorm.linear_layer)."""
    import re

    conv = re.compile(r"^(encoder\.convolutions\.\d+\.0|postnet\.convolutions\.\d+\.0|.*location_conv)\.(weight|bias)$")
    linear = re.compile(
        r"^(decoder\.prenet\.layers\.\d+|.*(?:query_layer|memory_layer|\.v|location_dense)"
        r"|decoder\.linear_projection|decoder\.gate_layer)\.(weight|bias)$"
    )
    if m := conv.match(key):
        return f"{m.group(1)}.conv.{m.group(2)}"
    if m := linear.match(key):
        return f"{m.group(1)}.linear_layer.{m.group(2)}"
    return key


def save_waveglow(path: Path, *, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """A tiny random WaveGlow in DeepLearningExamples' layout: ``module.`` prefixes, weight norm
    as ``weight_g``/``weight_v``, the config beside the state dict."""
    import torch

    from modelplex_tts.waveglow import WaveGlow

    config = config or TINY_WAVEGLOW
    torch.manual_seed(seed)
    model = WaveGlow(**config)
    # DeepLearningExamples zero-initialises each WN's last layer; give it weights so the
    # model is not the identity on its noise.
    for wn in model.WN:
        torch.nn.init.normal_(wn.end.weight, std=0.05)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "iteration": 10, "config": config, "state_dict": sd}, path)
    return path


def save_wavernn(path: Path, *, seed: int = 0) -> Path:
    """A tiny random torchaudio WaveRNN's state dict."""
    import torch
    from torchaudio.models import WaveRNN

    torch.manual_seed(seed)
    torch.save(WaveRNN(**TINY_WAVERNN).state_dict(), path)
    return path


PHONEMIZER_PHONES = [
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH",
    "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
]  # fmt: skip
"""The phonemes of the tiny DeepPhonemizer: ARPAbet without stress marks, as torchaudio's phoneme
processor reads them (``[AA]`` and the like; its pattern takes letters only)."""


def save_phonemizer(path: Path, *, seed: int = 0) -> Path:
    """A tiny random DeepPhonemizer forward transformer saved as ``Phonemizer.from_checkpoint``
    loads it (``en_us_cmudict_forward.pt``'s layout): the model's state dict, its config, the
    pickled ``Preprocessor`` (tokenizers) and the training step."""
    import torch
    from dp.model.model import ForwardTransformer
    from dp.preprocessing.text import Preprocessor

    config = {
        "model": {"type": "transformer", "d_model": 16, "d_fft": 32, "layers": 1, "dropout": 0.0, "heads": 1},
        "preprocessing": {
            "languages": ["en_us"],
            "text_symbols": list("abcdefghijklmnopqrstuvwxyz'"),
            "phoneme_symbols": [f"[{p}]" for p in PHONEMIZER_PHONES],
            "char_repeats": 3,
            "lowercase": True,
        },
    }
    torch.manual_seed(seed)
    model = ForwardTransformer.from_config(config)
    checkpoint = {
        "model": model.state_dict(),
        "config": config,
        "preprocessor": Preprocessor.from_config(config),
        "step": 0,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def tts_model(name: str, spec: str, weights: Path, **settings: Any) -> dict[str, Any]:
    """A ``[[models]]`` entry for a checkpoint, with the tests' stopping settings."""
    return {
        "name": name,
        "spec": spec,
        "weights": str(weights),
        "devices": ["cpu"],
        "settings": {**SETTINGS, **settings},
    }


def load_in_process(spec: str, weights: Path, *, device: str = "cpu", **settings: Any):  # type: ignore[no-untyped-def]
    """The same model, loaded in this thread through the plugin's factory (the reference) on
    ``device``, with the task's default settings (its batch size sets the decoder's padding)."""
    from modelplex import LoadContext, WeightsChoice, WeightsSource
    from modelplex.tasks.speech_synthesis.settings import SpeechSynthesisSettings
    from modelplex_tts.plugin import build_specs
    from modelplex_tts.settings import TTSSettings

    found = {s.name: s for s in build_specs()}[spec]
    ctx = LoadContext(
        "in-process",
        found,
        found.variant(None),
        WeightsChoice(WeightsSource.CHECKPOINT, weights),
        device,
        TTSSettings(**{**SETTINGS, **settings}),
        SpeechSynthesisSettings(),
    )
    model = found.factory(ctx)
    model.load()
    return model


@dataclass
class Recorder:
    """What a recorded model did, in order, and gates that hold its steps."""

    events: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold_start: dict[int, threading.Event] = field(default_factory=dict)
    """Before starting its Nth sentence, the model waits for this event (tests set it)."""
    released: threading.Event = field(default_factory=threading.Event)
    started: int = 0
    """Sentences started since the last reset."""

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.batch_sizes.clear()
            self.started = 0
        self.released.clear()

    def log(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


RECORDERS: dict[str, Recorder] = {}


def recorded_plugin():  # type: ignore[no-untyped-def]
    """A plugin with spec ``recorded-tts``: the Griffin-Lim pairing whose every start, step and
    release is logged in ``RECORDERS[model name]`` (and may be held by its gates); and spec
    ``fixed-rate-tts``, the same pairing saying it has no speaking rate (as a model without
    duration control would)."""
    from modelplex import ModelSpec, Task, hookimpl
    from modelplex_tts.model import TacotronSynthesizer
    from modelplex_tts.pairing import Pairing
    from modelplex_tts.plugin import build_specs
    from modelplex_tts.settings import TTSSettings

    class Recorded(TacotronSynthesizer):
        def load(self) -> None:
            super().load()
            self.recorder = RECORDERS.setdefault(self.ctx.model_name, Recorder())

        def start(self, prepared, options):  # type: ignore[no-untyped-def]
            n = self.recorder.started
            gate = self.recorder.hold_start.get(n)
            if gate is not None:
                self.recorder.log(f"waiting to start sentence {n}")
                if not gate.wait(60):
                    self.recorder.log("gave up waiting")
            self.recorder.log(f"start sentence {n}")
            self.recorder.started += 1
            return super().start(prepared, options)

        def step(self, utterances: Sequence[Any]):  # type: ignore[no-untyped-def]
            with self.recorder.lock:
                self.recorder.batch_sizes.append(len(utterances))
            return super().step(utterances)

        def release(self, utterance: Any) -> None:
            self.recorder.log("release")
            self.recorder.released.set()
            super().release(utterance)

        def warmup(self) -> None:
            pass

    class FixedRate(TacotronSynthesizer):
        supports_speaking_rate = False

    base = {s.name: s for s in build_specs()}["tacotron2-griffinlim"]

    class Plugin:
        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register(
                ModelSpec(
                    name="recorded-tts",
                    task=Task.SPEECH_SYNTHESIS,
                    factory=partial(Recorded, Pairing("recorded-tts", "griffin-lim", "recorded")),
                    variants=base.variants,
                    settings=TTSSettings,
                )
            )
            register(
                ModelSpec(
                    name="fixed-rate-tts",
                    task=Task.SPEECH_SYNTHESIS,
                    factory=partial(FixedRate, Pairing("fixed-rate-tts", "griffin-lim", "fixed rate")),
                    variants=base.variants,
                    settings=TTSSettings,
                )
            )

    return [("recorded_tts", Plugin())]


def offline(model, text: str, **options: Any):  # type: ignore[no-untyped-def]
    """``offline.synthesize`` on a thread of its own, as the server runs a model: torch's
    OpenMP team of the main thread crawls on this loaded 2-core machine (seconds, not
    milliseconds, for a tiny model), that of a fresh thread does not."""
    from concurrent.futures import ThreadPoolExecutor

    from modelplex.tasks.speech_synthesis.offline import synthesize

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(synthesize, model, text, **options).result()
