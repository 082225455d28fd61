"""Building a torchvision classifier from pretrained weights, a checkpoint, or random init.

Every path goes through torchvision's own builder, so the module is exactly the one
``torchvision.models.<arch>(weights=...)`` gives.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_builder

from modelplex import ModelLoadError, WeightsNotFoundError
from modelplex_vision.catalog import Architecture

log = logging.getLogger(__name__)

__all__ = ["build_from_checkpoint", "build_pretrained", "build_random", "hub_cache_file", "read_state_dict"]

# Auxiliary classifiers only matter in training; torchvision's pretrained files hold
# them, but its builders drop them after loading unless asked to keep them.
_AUX_HEADS = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}

# torchvision's DenseNet files predate a rename ("norm.1" -> "norm1"); its builder
# renames on load, and so must we, or those very files fail as checkpoints.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def hub_cache_file(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (or would download) the file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def build_pretrained(arch: Architecture, weights: WeightsEnum, *, allow_download: bool) -> nn.Module:
    """``torchvision.models.<arch>(weights=weights)``, refusing to download unless allowed."""
    cached = hub_cache_file(weights)
    if not cached.is_file() and not allow_download:
        raise WeightsNotFoundError(
            f"pretrained weights {weights} are not in the local cache: {cached} does not exist and "
            f"downloads are off. Either download {weights.url} on a networked machine and copy it to "
            f"{cached} (torch.hub's cache: $TORCH_HOME/hub/checkpoints), allow downloads for this model, "
            'give a checkpoint path as its weights, or set weights = "random" to serve untrained weights.'
        )
    try:
        model = get_model_builder(arch.builder)(weights=weights, progress=False)
    except Exception as e:  # a bad cache file or a failed download surfaces as many types
        if cached.is_file():
            raise ModelLoadError(
                f"cannot read pretrained weights {weights} from {cached}: {e}. The file is damaged or "
                f"not torchvision's: replace it with {weights.url}, or delete it to download it again."
            ) from e
        raise ModelLoadError(f"cannot download pretrained weights {weights} from {weights.url}: {e}") from e
    _drop_aux_heads(arch, model)
    return model


def build_random(arch: Architecture, num_classes: int) -> nn.Module:
    """The architecture with random weights, the same ones on every call (seed 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_model_builder(arch.builder)(weights=None, **_untrained_kwargs(arch, num_classes))
    _drop_aux_heads(arch, model)
    return model


def build_from_checkpoint(arch: Architecture, path: Path, num_classes: int) -> nn.Module:
    """The architecture with the weights of the checkpoint at ``path`` (strictly matched)."""
    state_dict = read_state_dict(path)
    if arch.builder.startswith("densenet"):
        state_dict = {_LEGACY_DENSENET_KEY.sub(r"\1\2", k): v for k, v in state_dict.items()}
    # Built on the meta device: random init would be wasted, and assign=True adopts the
    # checkpoint's tensors instead of copying them, so memory peaks at one copy.
    with torch.device("meta"):
        model = get_model_builder(arch.builder)(weights=None, **_untrained_kwargs(arch, num_classes))
    aux = _AUX_HEADS.get(arch.builder, ())
    has_aux = any(k.split(".", 1)[0] in aux for k in state_dict)
    if not has_aux:
        _drop_aux_heads(arch, model)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelLoadError(
            f"checkpoint {path} does not fit torchvision.models.{arch.builder}"
            f"(num_classes={num_classes}): {e}. "
            "If it was fine-tuned with another number of classes, set num_classes (or labels) in the "
            "model's settings."
        ) from e
    _drop_aux_heads(arch, model)
    if any(t.is_meta for t in chain(model.parameters(), model.buffers())):
        # A non-persistent buffer is in no state dict, so it would still be a placeholder.
        raise ModelLoadError(f"torchvision.models.{arch.builder} has tensors a checkpoint cannot fill")
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.safetensors`` file or a ``torch.save`` file (bare, or under
    a ``"state_dict"`` or ``"model"`` key), on the CPU."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsNotFoundError(f"checkpoint {path} {what}; give the path of a .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    # The messages never quote the file's content (callers of LoadModel see them); the
    # reader's own words go to the server's log.
    except pickle.UnpicklingError as e:
        log.warning("checkpoint %s: %s", path, e)
        raise ModelLoadError(
            f"checkpoint {path} holds more than tensors, and only plain state dicts are loaded "
            "(torch.load(weights_only=True)). Re-save just the weights: torch.save(model.state_dict(), path)"
        ) from e
    except Exception as e:  # torch.load and safetensors raise many types on a bad file
        log.warning("checkpoint %s: %s: %s", path, type(e).__name__, e)
        raise ModelLoadError(
            f"cannot read checkpoint {path}: not a .safetensors file nor a torch.save file of tensors"
        ) from e
    return _as_state_dict(loaded, path)


def _as_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ModelLoadError(
            f"checkpoint {path} is not a state dict (a mapping of names to tensors, bare or under "
            '"state_dict" or "model")'
        )
    state_dict = dict(loaded)
    # A model saved while wrapped in (Distributed)DataParallel prefixes every key.
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def _untrained_kwargs(arch: Architecture, num_classes: int) -> dict[str, Any]:
    """The builder arguments for ``weights=None`` that give the module torchvision builds
    for its pretrained weights, so their checkpoints fit (see each builder's source)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if arch.builder in _AUX_HEADS:
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    elif arch.builder.startswith("vgg"):
        kwargs.update(init_weights=False)
    return kwargs


def _drop_aux_heads(arch: Architecture, model: nn.Module) -> None:
    aux = _AUX_HEADS.get(arch.builder, ())
    if aux:
        setattr(model, "aux_logits", False)  # noqa: B010 - nn.Module's typing rejects plain attributes
        for name in aux:
            setattr(model, name, None)
