"""torchaudio's ``WAV2VEC2_ASR_*`` and ``VOXPOPULI_ASR_*`` pipelines (fine-tuned Wav2Vec 2.0 CTC).

Pretrained weights come from torch.hub's cache ($TORCH_HOME/hub/checkpoints), where
``bundle.get_model()`` keeps them: a missing file fails at once with its path and URL unless
the operator allows downloads. ``weights = "random"`` builds the bundle's architecture with
random weights (seed 0); a checkpoint path loads a state dict of that architecture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelplex import LoadContext, ModelLoadError, WeightsNotFoundError, WeightsSource
from modelplex_speech.checkpoints import read_state_dict
from modelplex_speech.torch_ctc import TorchCTC

__all__ = ["BundleWav2Vec2", "bundle_cache_file", "bundle_url"]

_BASE_URL = "https://download.pytorch.org/torchaudio/models/"


def bundle_url(bundle: Any) -> str:
    path = bundle._path  # torchaudio keeps the file's name there (no public accessor)
    return path if path.startswith("https") else _BASE_URL + path


def bundle_cache_file(bundle: Any) -> Path:
    """Where torch.hub keeps (or would download) the bundle's weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(bundle_url(bundle))


class BundleWav2Vec2(TorchCTC):
    """One torchaudio ASR bundle: its labels (``-`` is the blank, ``|`` the word delimiter)."""

    def __init__(self, ctx: LoadContext[Any], bundle_name: str) -> None:
        super().__init__(ctx)
        self.bundle_name = bundle_name

    def build(self) -> Any:
        import torch
        import torchaudio
        from torchaudio.models import wav2vec2_model

        bundle = getattr(torchaudio.pipelines, self.bundle_name)
        self.labels = tuple(bundle.get_labels())
        self.blank = 0
        self.word_delimiter = "|"
        self.sample_rate = int(bundle.sample_rate)
        self.samples_per_frame = 320  # the feature extractor's strides: 5 * 2**6
        weights = self.ctx.weights
        if weights.source is WeightsSource.PRETRAINED:
            cached = bundle_cache_file(bundle)
            if not cached.is_file() and not weights.allow_download:
                raise WeightsNotFoundError(
                    f"pretrained weights of torchaudio.pipelines.{self.bundle_name} are not in the local cache: "
                    f"{cached} does not exist and downloads are off. Download {bundle_url(bundle)} on a networked "
                    f"machine and copy it to {cached} (torch.hub's cache: $TORCH_HOME/hub/checkpoints), allow "
                    'downloads for this model, give a checkpoint path, or set weights = "random".'
                )
            try:
                return bundle.get_model(dl_kwargs={"progress": False})
            except Exception as e:
                raise ModelLoadError(
                    f"cannot load torchaudio.pipelines.{self.bundle_name} from {cached}: {e}. Replace the file with "
                    f"{bundle_url(bundle)}, or delete it to download it again."
                ) from e
        params = dict(bundle._params)  # the architecture's arguments (torchaudio has no public accessor)
        if weights.source is WeightsSource.CHECKPOINT:
            assert weights.path is not None
            state = read_state_dict(Path(weights.path))
            with torch.device("meta"):  # random init would be wasted: the checkpoint's tensors are adopted
                model = wav2vec2_model(**params)
            try:
                model.load_state_dict(state, assign=True)
            except RuntimeError as e:
                raise ModelLoadError(f"checkpoint {weights.path} does not fit {self.bundle_name}: {e}") from e
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = wav2vec2_model(**params)
        self._normalize = bool(getattr(bundle, "_normalize_waveform", False))
        return model

    _normalize = False

    def forward(self, batch: Any) -> Any:
        import torch

        if self._normalize:  # the LV-60K bundles normalise the waveform (get_model wraps it the same way)
            batch = torch.nn.functional.layer_norm(batch, batch.shape[-1:])
        emissions, _ = self.module(batch)
        return emissions
