"""Tacotron 2 (``torchaudio.models.Tacotron2``) decoded frame by frame, several sentences at once.

torchaudio's ``Tacotron2.infer`` decodes a padded batch to its end; a server needs more:
sentences that join and leave between steps, frames available while the sentence is
still decoding, and an output that does not depend on which other sentences shared a
step. So this module keeps each sentence's decoder state on its own and runs the
library's own modules (embedding, encoder, ``decoder.decode``, postnet) on the sentences
of a step, padded together. The pre-net's dropout, which Tacotron 2 keeps on at inference,
draws each sentence's masks from the sentence's own generator, so the same text and seed
give the same frames whatever the batch. The postnet of a window of frames is computed
with enough context to equal the postnet of the whole sentence there.

The checkpoint layouts: torchaudio's (a state dict, as the ``TACOTRON2_*`` bundles and
``torch.save(model.state_dict())`` write it) and NVIDIA DeepLearningExamples' (a dict
with ``state_dict``, ``module.``-prefixed keys and ``ConvNorm``/``LinearNorm`` wrappers,
and ``config``). The architecture is read from the tensors' shapes, so any size loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torchaudio.models import Tacotron2

__all__ = ["TacotronDecoder", "Utterance", "from_nvidia", "params_from_state_dict"]

_NVIDIA_WRAPPER = re.compile(r"\.(?:conv|linear_layer)\.(weight|bias)$")


def from_nvidia(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DeepLearningExamples' Tacotron 2 keys as torchaudio's: no ``module.`` prefix (DDP), no
    ``.conv``/``.linear_layer`` level (its ConvNorm and LinearNorm wrappers)."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        out[_NVIDIA_WRAPPER.sub(r".\1", key)] = value
    return out


def params_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """torchaudio ``Tacotron2`` constructor arguments that fit a state dict's tensors."""
    n_symbol, symbol_dim = sd["embedding.weight"].shape
    encoder_convs = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.convolutions.")})
    postnet_convs = sorted({int(k.split(".")[2]) for k in sd if k.startswith("postnet.convolutions.")})
    prenet = sd["decoder.prenet.layers.0.weight"]
    n_mels = prenet.shape[1]
    return {
        "mask_padding": False,
        "n_mels": n_mels,
        "n_symbol": n_symbol,
        "n_frames_per_step": 1,
        "symbol_embedding_dim": symbol_dim,
        "encoder_embedding_dim": sd["encoder.convolutions.0.0.weight"].shape[0],
        "encoder_n_convolution": len(encoder_convs),
        "encoder_kernel_size": sd["encoder.convolutions.0.0.weight"].shape[2],
        "decoder_rnn_dim": sd["decoder.decoder_rnn.weight_hh"].shape[1],
        "decoder_max_step": 2000,
        "decoder_dropout": 0.1,
        "decoder_early_stopping": True,
        "attention_rnn_dim": sd["decoder.attention_rnn.weight_hh"].shape[1],
        "attention_hidden_dim": sd["decoder.attention_layer.query_layer.weight"].shape[0],
        "attention_location_n_filter": sd["decoder.attention_layer.location_layer.location_conv.weight"].shape[0],
        "attention_location_kernel_size": sd["decoder.attention_layer.location_layer.location_conv.weight"].shape[2],
        "attention_dropout": 0.1,
        "prenet_dim": prenet.shape[0],
        "postnet_n_convolution": len(postnet_convs),
        "postnet_kernel_size": sd["postnet.convolutions.0.0.weight"].shape[2],
        "postnet_embedding_dim": sd["postnet.convolutions.0.0.weight"].shape[0],
        "gate_threshold": 0.5,
    }


@dataclass(eq=False)
class Utterance:
    """One sentence's decoder state (batch dimension 1) and its frames so far."""

    length: int
    memory: torch.Tensor
    processed_memory: torch.Tensor
    state: list[torch.Tensor]
    """attention hidden, attention cell, decoder hidden, decoder cell, attention weights,
    cumulative attention weights, attention context, last frame."""
    generator: torch.Generator
    max_frames: int
    mask: torch.Tensor
    """The attention mask of the memory (nothing masked: each utterance attends alone)."""
    frames: list[torch.Tensor] = field(default_factory=list)
    finished: bool = False
    mel: torch.Tensor | None = None
    """The decoded frames as one (n_mels, T) tensor, rebuilt when new frames arrive."""

    def frames_tensor(self) -> torch.Tensor:
        if self.mel is None or self.mel.shape[1] != len(self.frames):
            self.mel = torch.stack(self.frames, dim=1) if self.frames else self.memory.new_zeros((0, 0))
        return self.mel


class TacotronDecoder:
    """Runs a loaded ``Tacotron2`` step by step (see the module doc)."""

    def __init__(self, model: Tacotron2, gate_threshold: float, rows: int = 0) -> None:
        self.model = model.eval()
        self.gate_threshold = gate_threshold
        self.rows = rows
        """Decode batches padded to a multiple of this many rows (0: as they come); see decode."""
        self.n_mels = int(model.decoder.n_mels)
        conv = model.postnet.convolutions
        # Frames of context on each side that make a window's postnet equal the whole's.
        self.postnet_context = sum((c[0].kernel_size[0] - 1) // 2 for c in conv)

    @torch.inference_mode()
    def start(self, tokens: Sequence[int], max_frames: int, generator: torch.Generator) -> Utterance:
        """Encode a sentence and set up its decoder."""
        m = self.model
        device = m.embedding.weight.device
        x = torch.tensor([list(tokens)], dtype=torch.long, device=device)
        lengths = torch.tensor([x.shape[1]], dtype=torch.int32, device=device)
        memory = m.encoder(m.embedding(x).transpose(1, 2), lengths)
        states = m.decoder._initialize_decoder_states(memory)
        *state, processed = states
        go = m.decoder._get_go_frame(memory)
        mask = torch.zeros((1, x.shape[1]), dtype=torch.bool, device=device)
        return Utterance(int(x.shape[1]), memory, processed, [*state, go], generator, max_frames, mask)

    def _prenet(self, x: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """The pre-net, its always-on dropout drawn row by row from each sentence's generator
        (padding rows, None, keep everything)."""
        for linear in self.model.decoder.prenet.layers:
            x = F.relu(linear(x))
            half = x.new_full((x.shape[1],), 0.5)
            keep = torch.stack([torch.bernoulli(half, generator=g) if g else half * 2 for g in generators])
            x = x * keep * 2.0
        return x

    @torch.inference_mode()
    def decode(self, utterances: Sequence[Utterance], n_frames: int) -> None:
        """Decode up to ``n_frames`` more frames of every unfinished utterance, together.

        One frame is torchaudio's ``_Decoder.decode`` (at inference, where its dropouts are
        off), with the LSTMs and projections batched over the utterances and the attention
        run per utterance over its own memory: padding memories to a common length would
        change the order of the softmax's sums, and so its rounding, with the batch."""
        live = [u for u in utterances if not u.finished]
        if not live:
            return
        # Pad the batch to a fixed number of rows (copies of the first): the matrix products
        # then take the same path whatever the batch, and each row's result is bit-identical.
        pad = (-len(live)) % self.rows if self.rows else 0

        def batch(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(parts + [parts[0]] * pad)

        ah, ac, dh, dc, ctx, frame = (batch([u.state[i] for u in live]) for i in (0, 1, 2, 3, 6, 7))
        weights = [u.state[4] for u in live]
        cumulative = [u.state[5] for u in live]
        generators: list[torch.Generator | None] = [u.generator for u in live]
        generators += [None] * pad
        decoder = self.model.decoder
        attention = decoder.attention_layer
        done = [False] * len(live)
        for _ in range(n_frames):
            x = self._prenet(frame, generators)
            ah, ac = decoder.attention_rnn(torch.cat((x, ctx), -1), (ah, ac))
            contexts = []
            for i, u in enumerate(live):
                both = torch.cat((weights[i].unsqueeze(1), cumulative[i].unsqueeze(1)), dim=1)
                context, weights[i] = attention(ah[i : i + 1], u.memory, u.processed_memory, both, u.mask)
                cumulative[i] = cumulative[i] + weights[i]
                contexts.append(context)
            ctx = batch(contexts)
            dh, dc = decoder.decoder_rnn(torch.cat((ah, ctx), -1), (dh, dc))
            hidden_context = torch.cat((dh, ctx), dim=1)
            frame = decoder.linear_projection(hidden_context)
            gate = decoder.gate_layer(hidden_context)
            stop = (torch.sigmoid(gate.squeeze(1)) > self.gate_threshold).tolist()
            for i, u in enumerate(live):
                if done[i]:
                    continue
                u.frames.append(frame[i])
                if stop[i] or len(u.frames) >= u.max_frames:
                    done[i] = True
            if all(done):
                break
        for i, u in enumerate(live):
            u.finished = done[i]
            row = slice(i, i + 1)
            u.state = [ah[row], ac[row], dh[row], dc[row], weights[i], cumulative[i], ctx[row], frame[row]]

    @torch.inference_mode()
    def postnet_window(self, u: Utterance, start: int, end: int) -> torch.Tensor:
        """The final mel (decoder output plus postnet) of frames [start, end), equal to that of
        the whole sentence: frames up to ``end + postnet_context`` must be decoded (or the
        sentence finished)."""
        mel = u.frames_tensor()
        c = self.postnet_context
        lo, hi = max(0, start - c), min(mel.shape[1], end + c)
        window = mel[:, lo:hi][None]
        out = window + self.model.postnet(window)
        return out[0, :, start - lo : end - lo]
