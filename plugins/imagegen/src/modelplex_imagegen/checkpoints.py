"""Reading checkpoints safely: ``torch.load(weights_only=True)`` or safetensors, never pickle.

Every error is a :class:`ModelLoadError` (or :class:`WeightsNotFoundError`) whose message
says what was wrong with the file and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelplex.errors import ModelLoadError, WeightsNotFoundError

__all__ = [
    "GENERATOR_KEYS",
    "generator_state",
    "load_strict",
    "read_checkpoint",
    "refuse_pickle",
    "strip_prefix",
]

GENERATOR_KEYS = (
    "netG",
    "generator",
    "G",
    "g_ema",
    "gen",
    "netG_state_dict",
    "generator_state_dict",
    "G_state_dict",
    "model_G",
    "state_dict_G",
    "g",
    "state_dict",
    "model",
)
"""Where training checkpoints usually keep the generator's state_dict, in the order tried."""

_PICKLE_SUFFIXES = (".pkl", ".pickle")


def refuse_pickle(path: Path, how_to_convert: str) -> None:
    """Refuse a pickled file (``.pkl``): unpickling runs any code the file holds."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"{path} is a pickle: loading it would run whatever code it holds, so modelplex refuses it. "
            + how_to_convert
        )


def read_checkpoint(path: Path) -> Any:
    """A ``.safetensors`` file's tensors, or what ``torch.load(path, weights_only=True)`` reads."""
    import torch

    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist or is not a file")
    refuse_pickle(path, "Save the state_dict with torch.save(module.state_dict(), 'model.pt') and load that.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"cannot read the safetensors file {path}: {e}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # weights_only refuses pickled objects other than tensors and containers: a whole
        # module saved with torch.save(model), or an argparse Namespace in a training dict.
        raise ModelLoadError(
            f"cannot read {path} with torch.load(weights_only=True): {type(e).__name__}: {_first_line(e)}. "
            "It must hold tensors in dicts and lists only: re-save the generator with "
            "torch.save(generator.state_dict(), path) (or a dict of such state_dicts)."
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def _is_state_dict(value: Any) -> bool:
    import torch

    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, torch.Tensor) for v in value.values())
    )


def generator_state(checkpoint: Any, path: Path, key: str | None = None, keys: Iterable[str] = GENERATOR_KEYS) -> dict:
    """The generator's state_dict in ``checkpoint``: the whole file when it is one, else the
    value under ``key`` (when given) or under the first of ``keys`` that holds one."""
    if not isinstance(checkpoint, Mapping):
        raise ModelLoadError(f"{path} holds a {type(checkpoint).__name__}, not a state_dict or a dict of them")
    if key is not None:
        if not _is_state_dict(checkpoint.get(key)):
            raise ModelLoadError(f"{path} has no state_dict under {key!r}; its keys: {_keys(checkpoint)}")
        return dict(checkpoint[key])
    if _is_state_dict(checkpoint) and not any(_is_state_dict(v) for v in checkpoint.values()):
        return dict(checkpoint)
    for candidate in keys:
        if _is_state_dict(checkpoint.get(candidate)):
            return dict(checkpoint[candidate])
    raise ModelLoadError(
        f"cannot find the generator's state_dict in {path} (tried the keys {', '.join(keys)}); its keys: "
        f"{_keys(checkpoint)}. Name the key with the setting state_key."
    )


def _keys(mapping: Mapping[Any, Any]) -> str:
    names = [str(k) for k in mapping]
    return ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")


def strip_prefix(state: dict, prefixes: Iterable[str] = ("module.", "_orig_mod.")) -> dict:
    """Drop the prefix DataParallel (``module.``) or torch.compile (``_orig_mod.``) put on every key."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_strict(module: Any, state: Mapping[str, Any], path: Path, hint: str = "") -> None:
    """``module.load_state_dict(state, strict=True)``, with an error that lists what differs."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if wrong:
            parts.append(
                "shape mismatches "
                + ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:4])
            )
        raise ModelLoadError(f"{path} does not fit the model: {'; '.join(parts)}. {hint}".strip())
    module.load_state_dict(state, strict=True)


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
