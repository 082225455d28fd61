"""Reading checkpoints without running code from them.

- :func:`read_state_dict`: a ``.safetensors`` file, or a ``torch.save`` file read with
  ``torch.load(weights_only=True)``.
- :func:`read_package`: a ``torch.save`` file that holds more than tensors and plain data
  (deepspeech.pytorch's packages and Lightning checkpoints pickle config objects:
  dataclasses, enums, OmegaConf containers). It is read with a restricted unpickler: the
  only callables it resolves are torch's own tensor-rebuilding functions (the allow-list
  of ``weights_only``); every other global a checkpoint names becomes an inert
  :class:`Pickled` record of its name and state, which :func:`plain` turns into plain data.
  Nothing named in the file is imported or called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from modelplex import ModelLoadError, WeightsNotFoundError

__all__ = ["Pickled", "plain", "read_package", "read_state_dict"]


def _check_file(path: Path) -> None:
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsNotFoundError(f"checkpoint {path} {what}")


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file, or the state dict of a ``torch.save`` file (bare
    or under ``"state_dict"``/``"model"``), on the CPU."""
    import torch

    _check_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"checkpoint {path} holds more than tensors, and only plain state dicts are loaded "
            f"(torch.load(weights_only=True)): {e}"
        ) from None
    except Exception as e:
        raise ModelLoadError(f"cannot read the checkpoint {path}: {type(e).__name__}: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint {path} holds no state dict")
    return state


class Pickled:
    """What an object of a class outside the allow-list unpickles to: its class's name, the
    arguments it was built with, and the state it was given. Nothing is called."""

    qualname = "?"
    args: tuple[Any, ...] = ()
    state: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Pickled:
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname} {self.args!r} {self.state!r}>"


_STAND_INS: dict[str, type[Pickled]] = {}


def _stand_in(qualname: str) -> type[Pickled]:
    cls = _STAND_INS.get(qualname)
    if cls is None:
        cls = type(qualname.rsplit(".", 1)[-1], (Pickled,), {"qualname": qualname})
        _STAND_INS[qualname] = cls
    return cls


def _allowed() -> dict[str, Any]:
    from torch import _weights_only_unpickler as wou

    # torch's own allow-list for weights_only loading: tensor and storage rebuilding, dtypes,
    # OrderedDict and the like; the names are "module.qualname".
    return dict(wou._get_allowed_globals())


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get(f"{module}.{name}")
        if allowed is not None:
            return allowed
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        return _stand_in(f"{module}.{name}")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Pickled) else _stand_in("?")()


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an Unpickler (torch subclasses it to map
    storages, then defers to our ``find_class``)."""

    Unpickler = _Unpickler
    load = staticmethod(pickle.load)
    __name__ = "modelplex_speech.checkpoints"


_ALLOWED: dict[str, Any] = {}


def read_package(path: Path) -> Any:
    """A ``torch.save`` file of tensors and config objects, read with the restricted
    unpickler; config objects come back as :class:`Pickled` records (see :func:`plain`)."""
    import torch

    _check_file(path)
    if not _ALLOWED:
        _ALLOWED.update(_allowed())
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule)
    except Exception as e:
        raise ModelLoadError(f"cannot read the checkpoint {path}: {type(e).__name__}: {e}") from None


def plain(obj: Any) -> Any:
    """Plain data of an unpickled package: dicts, lists, strings, numbers, tensors. A
    dataclass becomes the dict of its fields, an enum member its value, an OmegaConf
    container its content, a class reference its qualified name."""
    if isinstance(obj, type) and issubclass(obj, Pickled):
        return obj.qualname
    if isinstance(obj, Pickled):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots) state
        if isinstance(state, dict):
            if "_content" in state:  # an OmegaConf container
                return plain(state["_content"])
            if "_val" in state:  # an OmegaConf value node
                return plain(state["_val"])
            return {k: plain(v) for k, v in state.items()}
        if obj.args:  # an enum member, rebuilt from its value
            return plain(obj.args[0]) if len(obj.args) == 1 else [plain(a) for a in obj.args]
        return obj.qualname
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
