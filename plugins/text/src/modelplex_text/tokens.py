"""Text around the tokenizer: token bytes for logprobs, and chat templates."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelplex import InvalidInputError, ModelLoadError
from modelplex.tasks.text_generation import ChatMessage

__all__ = ["TokenBytes", "chat_template", "render_chat"]

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the byte each printable character stands for.
    (Printable Latin-1 bytes stand for themselves; the others map to 256 and up, in order.)"""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class TokenBytes:
    """The raw bytes of a token: a byte-level BPE token's bytes (GPT-2, Llama 3, Qwen), a
    SentencePiece byte-fallback token's (``<0xE3>``), or else its text's UTF-8."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        self._byte_level = decoder is not None and "ByteLevel" in repr(decoder)
        self._special = set(getattr(tokenizer, "all_special_ids", ()))

    def __call__(self, token_id: int) -> bytes:
        token = self._tokenizer.convert_ids_to_tokens(token_id)
        if isinstance(token, str) and token_id not in self._special:
            m = _BYTE_TOKEN.match(token)
            if m:
                return bytes([int(m.group(1), 16)])
            if self._byte_level:
                table = _byte_decoder()
                if all(c in table for c in token):
                    return bytes(table[c] for c in token)
        return str(self._tokenizer.decode([token_id], skip_special_tokens=False)).encode()


def chat_template(tokenizer: Any, configured: str | None, configured_file: Path | None) -> str | None:
    """The template to render chats with: the configured one (text or file), else the tokenizer's."""
    if configured_file is not None:
        try:
            return configured_file.read_text(encoding="utf-8")
        except OSError as e:
            raise ModelLoadError(f"cannot read chat_template_file {configured_file}: {e}") from e
    if configured is not None:
        return configured
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) and template else None


def render_chat(tokenizer: Any, template: str, messages: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
    """The conversation's prompt text, as ``apply_chat_template(..., tokenize=False)`` renders it."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
    except Exception as e:  # jinja's TemplateError (raise_exception in templates), a bad role, ...
        raise InvalidInputError(f"the model's chat template refused the messages: {type(e).__name__}: {e}") from e
    if not isinstance(text, str):
        raise InvalidInputError("the model's chat template did not render text")
    return text
