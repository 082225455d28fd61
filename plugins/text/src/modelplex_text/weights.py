"""Where a model's files come from: a local folder, or the Hugging Face cache (or hub).

Every check here is on the local disk, so a missing model fails at once with a
message that says what to do, instead of after network timeouts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelplex import LoadContext, WeightsNotFoundError, WeightsSource

__all__ = ["Source", "resolve"]

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class Source:
    """What to hand ``from_pretrained``."""

    name_or_path: str
    local_files_only: bool
    random: bool = False
    """Build from the config with random weights instead of loading them."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _cached(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def resolve(ctx: LoadContext, hub_id: str | None, aliases: tuple[str, ...] = ()) -> Source:
    """The source of ``ctx``'s weights; WeightsNotFoundError when it is not there."""
    choice = ctx.weights
    if choice.source is WeightsSource.CHECKPOINT:
        assert choice.path is not None
        return Source(str(_folder(choice.path)), local_files_only=True)
    if hub_id is None:
        raise WeightsNotFoundError(
            f"model {ctx.model_name!r}: spec {ctx.spec.name!r} serves any model, so it needs one: "
            "set weights to a local folder saved with save_pretrained, or set settings.hub_id to a "
            "Hugging Face model id"
        )
    random = choice.source is WeightsSource.RANDOM
    if _offline() or not choice.allow_download:
        for candidate in (hub_id, *aliases):
            if _cached(candidate):
                return Source(candidate, local_files_only=True, random=random)
        from huggingface_hub.constants import HF_HUB_CACHE

        why = "HF_HUB_OFFLINE is set" if _offline() else "downloads are off (server.allow_download = false)"
        raise WeightsNotFoundError(
            f"model {ctx.model_name!r}: {hub_id} is not in the local Hugging Face cache ({HF_HUB_CACHE}) "
            f"and {why}. Either run `hf download {hub_id}` on a machine with network access and copy its "
            "cache folder here (or set HF_HOME to it), set weights to a local folder saved with "
            "save_pretrained (model and tokenizer), or allow downloads (server.allow_download = true, "
            "HF_HUB_OFFLINE unset)."
        )
    return Source(hub_id, local_files_only=False, random=random)


def _folder(path: Path) -> Path:
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is a file, not a folder"
        raise WeightsNotFoundError(
            f"weights {path} {what}: give a folder saved with save_pretrained (config.json, the weights "
            'and the tokenizer files), or weights = "pretrained"'
        )
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"weights folder {path} has no config.json: save the model there with "
            "model.save_pretrained(path) and tokenizer.save_pretrained(path)"
        )
    return path
