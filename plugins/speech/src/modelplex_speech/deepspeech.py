"""``torchaudio.models.DeepSpeech`` over log-mel or MFCC features, from a documented checkpoint.

The checkpoint format (``modelplex.deepspeech/1``; docs/speech-recognition.md):

- a ``.safetensors`` file holding the model's state dict, whose metadata key
  ``modelplex.deepspeech`` is the JSON of the config below; or
- a ``torch.save`` file of ``{"format": "modelplex.deepspeech/1", "config": {...},
  "state_dict": {...}}``, read with ``torch.load(weights_only=True)``.

The config: ``labels`` (the output classes in order), ``blank`` (index of the CTC blank,
default 0), ``word_delimiter`` (default ``" "``), ``sample_rate`` (Hz), and ``features``:
``{"type": "log_mel" | "mfcc", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc"}``
(torchaudio's ``MelSpectrogram``/``MFCC`` with those arguments; log-mel is
``log(mel + 1e-6)``). The layer sizes come from the state dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelplex import ModelLoadError, WeightsNotFoundError, WeightsSource
from modelplex_speech.checkpoints import read_state_dict
from modelplex_speech.torch_ctc import TorchCTC

__all__ = ["FORMAT", "DeepSpeechConfig", "Features", "TorchaudioDeepSpeech", "save_deepspeech"]

FORMAT = "modelplex.deepspeech/1"
METADATA_KEY = "modelplex.deepspeech"
ENGLISH = ("<blank>", " ", *"abcdefghijklmnopqrstuvwxyz'")


@dataclass(frozen=True)
class Features:
    """The model's input features (torchaudio transforms)."""

    type: str = "log_mel"
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    n_mfcc: int = 40


@dataclass(frozen=True)
class DeepSpeechConfig:
    labels: tuple[str, ...] = ENGLISH
    blank: int = 0
    word_delimiter: str = " "
    sample_rate: int = 16000
    features: Features = field(default_factory=Features)

    @classmethod
    def parse(cls, data: Any, where: str) -> DeepSpeechConfig:
        try:
            feats = Features(**dict(data.get("features") or {}))
            cfg = cls(
                labels=tuple(str(x) for x in data["labels"]),
                blank=int(data.get("blank", 0)),
                word_delimiter=str(data.get("word_delimiter", " ")),
                sample_rate=int(data.get("sample_rate", 16000)),
                features=feats,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelLoadError(f"{where}: the DeepSpeech config is not valid ({type(e).__name__}: {e})") from None
        if feats.type not in ("log_mel", "mfcc"):
            raise ModelLoadError(f"{where}: features.type must be 'log_mel' or 'mfcc', got {feats.type!r}")
        if not 0 <= cfg.blank < len(cfg.labels):
            raise ModelLoadError(f"{where}: blank {cfg.blank} is not an index of the {len(cfg.labels)} labels")
        return cfg

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @property
    def n_feature(self) -> int:
        return self.features.n_mels if self.features.type == "log_mel" else self.features.n_mfcc


def save_deepspeech(module: Any, cfg: DeepSpeechConfig, path: Path) -> None:
    """Write ``module`` (a torchaudio DeepSpeech) and ``cfg`` in the checkpoint format."""
    import torch

    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={METADATA_KEY: cfg.to_json()})
    else:
        torch.save({"format": FORMAT, "config": json.loads(cfg.to_json()), "state_dict": state}, path)


def _read(path: Path) -> tuple[DeepSpeechConfig, dict[str, Any]]:
    import torch

    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist: give a DeepSpeech checkpoint ({FORMAT})")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(METADATA_KEY)
        if meta is None:
            raise ModelLoadError(
                f"checkpoint {path} has no {METADATA_KEY!r} metadata: it is not in the {FORMAT} format"
            )
        return DeepSpeechConfig.parse(json.loads(meta), str(path)), read_state_dict(path)
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read the checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise ModelLoadError(f"checkpoint {path} is not in the {FORMAT} format (no format key)")
    return DeepSpeechConfig.parse(package.get("config") or {}, str(path)), package["state_dict"]


class TorchaudioDeepSpeech(TorchCTC):
    """``torchaudio.models.DeepSpeech``: one frame per feature hop."""

    def build(self) -> Any:
        import torch
        from torchaudio.models import DeepSpeech

        weights = self.ctx.weights
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            cfg, state = _read(Path(weights.path))
            try:
                hidden, n_feature = state["fc1.fc.weight"].shape
                module = DeepSpeech(n_feature, n_hidden=hidden, n_class=state["out.weight"].shape[0], dropout=0.0)
                module.load_state_dict(state)
            except (KeyError, RuntimeError) as e:
                raise ModelLoadError(f"checkpoint {weights.path} does not fit torchaudio's DeepSpeech: {e}") from e
            if n_feature != cfg.n_feature or module.out.out_features != len(cfg.labels):
                raise ModelLoadError(
                    f"checkpoint {weights.path}: the weights take {n_feature} features and give "
                    f"{module.out.out_features} classes, the config says {cfg.n_feature} and {len(cfg.labels)}"
                )
        elif weights.source is WeightsSource.RANDOM:
            cfg = DeepSpeechConfig()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                module = DeepSpeech(cfg.n_feature, n_hidden=self.ctx.settings.hidden_size, n_class=len(cfg.labels))
        else:
            raise WeightsNotFoundError(
                f"deepspeech has no pretrained weights of its own: give a checkpoint in the {FORMAT} format "
                '(docs/speech-recognition.md), or weights = "random"'
            )
        self.cfg = cfg
        self.labels, self.blank, self.word_delimiter = cfg.labels, cfg.blank, cfg.word_delimiter
        self.sample_rate = cfg.sample_rate
        self.samples_per_frame = cfg.features.hop_length
        self._features: Any = self._transform(cfg)
        return module

    @staticmethod
    def _transform(cfg: DeepSpeechConfig) -> Any:
        import torchaudio

        f = cfg.features
        mel = {"n_fft": f.n_fft, "win_length": f.win_length, "hop_length": f.hop_length, "n_mels": f.n_mels}
        if f.type == "mfcc":
            return torchaudio.transforms.MFCC(sample_rate=cfg.sample_rate, n_mfcc=f.n_mfcc, melkwargs=mel)
        return torchaudio.transforms.MelSpectrogram(sample_rate=cfg.sample_rate, **mel)

    def load(self) -> None:
        super().load()
        self._features = self._features.to(self.ctx.device)

    def features(self, batch: Any) -> Any:
        """(B, N) samples to the (B, 1, frames, features) input."""
        x = self._features(batch)
        if self.cfg.features.type == "log_mel":
            x = (x + 1e-6).log()
        return x.transpose(1, 2).unsqueeze(1)

    def forward(self, batch: Any) -> Any:
        return self.module(self.features(batch))
