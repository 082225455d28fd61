"""How far windowed Wav2Vec 2.0 (the interim results) agrees with one pass over the whole
segment (the final), measured on a tiny Wav2Vec2ForCTC trained here on synthetic "speech".

    .venv/bin/python benchmarks/bench_speech_window_agreement.py [--train-minutes 9] [--clips 60] [--crops]

Random weights say nothing about agreement (their emissions are noise either way), and no
pretrained weights are reachable here, so the script first trains a small Wav2Vec2ForCTC of
the wav2vec2-base family (group-norm convolutional feature extractor over the whole input,
positional convolution, full attention, 320 samples per frame, the processor's per-input
normalisation; 2 layers of width 64, 16 conv channels; its transformer is pre-norm, as in the
large models, which trained faster here) for a few CPU minutes on a toy language: eight
"letters", each a burst of 80-140 ms of one or two tones (250 Hz to 4 kHz, octaves apart, 3 %
jitter), letters of a word 20-40 ms apart, words 80-250 ms apart (the word delimiter), noise.
It learns with frame-level cross-entropy against the synthetic alignment (the letter sounding
at each frame's centre, the delimiter in gaps between words, blank elsewhere): CTC from
scratch sat on its all-blank plateau for longer than this script may run. The result is still
a CTC model to the server (greedy decoding collapses repeats and drops blanks). With --crops,
half the training clips are cut at random places, as windows are. Training stops at
--train-minutes or when the greedy CER on held-out clips drops under --target-cer; the model
is cached (a save_pretrained folder with its processor, loadable by the hf-wav2vec2 spec)
under benchmarks/results/speech-window-toy[-crops]/ and reused (--retrain to train again).

Then, for each window / left context / look-ahead (the runtime's defaults first), it cuts each
held-out clip exactly as the runtime's Stepper cuts an open segment (windows of W frames
starting on frame boundaries, each run with L frames before it and A after it, the processor
normalizing each input on its own; the frames of the window are kept) and reports:

- frame agreement: the share of frames whose argmax label equals the whole-clip pass's;
- CER(windowed, whole): the edit distance between the interim transcript (greedy over the
  windowed frames) and the whole-clip transcript, over the latter's length;
- CER against the truth, for the whole-clip pass and the windowed one;
- the same agreement when the input is normalised once for the whole clip and windows are
  cut from it (no per-window normalisation by the processor): the share of the gap that
  per-input statistics cause, as against missing context (the group norm of the first
  convolution still sees one window).

Frames are scored up to 100 ms past each clip's last letter (what the voice-activity detector
would keep), so long silences at the end do not count; --score-tail scores one more second of
silence (a pause the detector has not yet cut, or vad = "none").

Each clip ends with enough silence that the windows cover all its speech. Then (--check-server)
a few clips are streamed to a real server serving the toy model at the default settings
(FLOAT32, vad "none"), and every interim transcript it sends must be the greedy decode of a
whole number of the windows computed here: the cutting above is the runtime's. Results are
printed and written to benchmarks/results/speech_window_agreement[_crops].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RATE = 16000
SPF = 320  # samples per frame
LETTERS = "ABDEGKMO"
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS]
# The frequencies of each letter's tones: octaves apart, alone or in pairs.
TONES = {
    "A": (250,),
    "B": (500,),
    "D": (1000,),
    "E": (2000,),
    "G": (4000,),
    "K": (250, 2000),
    "M": (500, 4000),
    "O": (1000, 4000),
}

SETTINGS = (  # (window ms, left context ms, look-ahead ms); the runtime's defaults first
    (1000, 500, 250),
    (500, 250, 100),
    (1000, 0, 40),
    (2000, 1000, 500),
)


# -- the toy language -------------------------------------------------------------------------


def _letter(c: str, rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(0.08, 0.14) * RATE)
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t + rng.uniform(0, 6.3)) for f in TONES[c])
    return np.asarray(x) * np.hanning(n)


def toy_clip(rng: np.random.Generator, words: int, tail_s: float = 0.0) -> tuple[np.ndarray, str, np.ndarray]:
    """A clip of ``words`` toy words, its transcript, and each sample's label: the letter
    sounding, the word delimiter in the gaps between words, blank elsewhere."""
    parts = [np.zeros(int(rng.uniform(0.05, 0.3) * RATE))]
    marks = [np.zeros(len(parts[0]), np.int64)]
    text = []
    for w in range(words):
        word = "".join(rng.choice(list(LETTERS), size=rng.integers(1, 5)))
        text.append(word)
        if w:
            gap = int(rng.uniform(0.08, 0.25) * RATE)
            parts.append(np.zeros(gap))
            marks.append(np.full(gap, VOCAB.index("|")))
        for k, c in enumerate(word):
            if k:
                gap = int(rng.uniform(0.02, 0.04) * RATE)
                parts.append(np.zeros(gap))
                marks.append(np.zeros(gap, np.int64))
            parts.append(_letter(c, rng) * rng.uniform(0.4, 1.0))
            marks.append(np.full(len(parts[-1]), VOCAB.index(c)))
    end = int(rng.uniform(0.08, 0.25) * RATE + tail_s * RATE)
    parts.append(np.zeros(end))
    marks.append(np.zeros(end, np.int64))
    x = np.concatenate(parts)
    x = x + rng.normal(0, 0.03, len(x))
    return (0.5 * x / np.abs(x).max()).astype(np.float32), " ".join(text), np.concatenate(marks)


# -- model ---------------------------------------------------------------------------------


def build(path: Path):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, do_normalize=True)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="group",
        do_stable_layer_norm=True,  # pre-LN encoder: trains in minutes from scratch
        pad_token_id=0,
        ctc_loss_reduction="mean",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    torch.manual_seed(0)
    return Wav2Vec2ForCTC(config), Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)


def greedy(ids) -> str:
    out, previous = [], -1
    for i in ids:
        if i != previous and i != 0:
            out.append(" " if VOCAB[i] == "|" else VOCAB[i] if i > 4 else "")
        previous = i
    return " ".join("".join(out).split())


def cer(hyp: str, ref: str) -> float:
    row = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        prev, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != r))
    return row[-1] / max(1, len(ref))


def emissions(model, processor, x: np.ndarray, normalised: bool = False) -> torch.Tensor:
    """The logits of one input; ``normalised``: ``x`` is already zero-mean, unit-variance (the
    processor's normalisation is skipped)."""
    if normalised:
        values = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    else:
        values = processor.feature_extractor([x], sampling_rate=RATE, return_tensors="pt")["input_values"]
    with torch.inference_mode():
        return model(values).logits[0]


def crop(rng: np.random.Generator, clip: tuple[np.ndarray, str, np.ndarray]) -> tuple[np.ndarray, str, np.ndarray]:
    """A random stretch of at least 0.3 s of the clip (its frame targets come along)."""
    x, text, marks = clip
    n = int(rng.integers(min(len(x), int(0.3 * RATE)), len(x) + 1))
    a = int(rng.integers(0, len(x) - n + 1))
    return x[a : a + n], text, marks[a : a + n]


def train(path: Path, minutes: float, target: float, held_out, crops: bool) -> dict:
    model, processor = build(path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(1)
    started, step, log = time.perf_counter(), 0, []
    val_cer = 1.0
    while True:
        model.train()
        batch = [toy_clip(rng, int(rng.integers(1, 4))) for _ in range(8)]
        if crops:  # half the clips cut anywhere, as windows are
            batch = [crop(rng, c) if rng.random() < 0.5 else c for c in batch]
        length = max(len(x) for x, _, _ in batch)
        audio = np.stack([np.pad(x, (0, length - len(x))) for x, _, _ in batch])
        values = processor.feature_extractor(list(audio), sampling_rate=RATE, return_tensors="pt")["input_values"]
        # Frame-level targets from the synthetic alignment (the label at each frame's centre):
        # CTC from scratch sat on its all-blank plateau for longer than this script may run.
        marks = np.stack([np.pad(m, (0, length - len(m))) for _, _, m in batch])
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 100)
        logits = model(values).logits
        centres = np.minimum(np.arange(logits.shape[1]) * SPF + 200, length - 1)  # frame j: 320 j + [0, 400)
        targets = torch.from_numpy(marks[:, centres])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        elapsed = (time.perf_counter() - started) / 60
        if step % 50 == 0 or elapsed > minutes:
            model.eval()
            errors = [cer(greedy(emissions(model, processor, x).argmax(-1)), t) for x, t, _ in held_out]
            val_cer = float(np.mean(errors))
            log.append({"step": step, "minutes": round(elapsed, 2), "loss": round(loss.item(), 4), "cer": val_cer})
            print(f"step {step:5d}  {elapsed:5.2f} min  loss {loss.item():.3f}  held-out CER {val_cer:.3f}", flush=True)
            if val_cer <= target or elapsed > minutes:
                break
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    summary = {"steps": step, "minutes": round(elapsed, 2), "held_out_cer": val_cer, "crops": crops, "log": log}
    (path / "training.json").write_text(json.dumps(summary, indent=1))
    return summary


# -- windows, as the runtime's Stepper cuts them ---------------------------------------------------


def frames(ms: float) -> int:
    return round(ms / 1000 * RATE / SPF)


def windowed_ids(
    model, processor, x: np.ndarray, window_ms, left_ms, lookahead_ms, normalised: bool = False
) -> tuple[list[int], int]:
    """The argmax label of each frame the interim steps decode, over the whole clip, and the
    window's length in frames."""
    window, left, ahead = max(1, frames(window_ms)), frames(left_ms), max(2, frames(lookahead_ms))
    out: list[int] = []
    decoded = 0
    while (decoded + window + ahead) * SPF <= len(x):
        first = max(0, decoded - left)
        scores = emissions(model, processor, x[first * SPF : (decoded + window + ahead) * SPF], normalised)
        skip = decoded - first
        out += scores[skip : skip + window].argmax(-1).tolist()
        decoded += window
    return out, window


def speech_frames(marks: np.ndarray) -> int:
    """Frames up to 100 ms past the clip's last letter: what a voice-activity detector would
    keep of its segment (speech_pad_ms), so long silences are not scored."""
    last = int(np.flatnonzero(marks > VOCAB.index("|"))[-1])
    return -(-(last + RATE // 10) // SPF)


def measure(model, processor, clips, tail: bool = False) -> list[dict]:
    rows = []
    whole = [emissions(model, processor, x).argmax(-1).tolist() for x, _, _ in clips]
    # The same clips normalised once as a whole: windows cut from them skip the per-window
    # normalisation, which isolates its share of the disagreement.
    flat = [(x - x.mean()) / np.sqrt(x.var() + 1e-7) for x, _, _ in clips]
    for window_ms, left_ms, lookahead_ms in SETTINGS:
        by_third = np.zeros((3, 2))  # frames agreeing / frames, by where in its window a frame lies
        agree = np.zeros(2)
        total = 0
        cers: list[list[float]] = [[], []]
        truth_whole, truth_windowed = [], []
        for (x, text, marks), xn, ids in zip(clips, flat, whole, strict=True):
            n = speech_frames(marks) + (RATE // SPF if tail else 0)
            ref = greedy(ids[:n])
            for variant, normalised in enumerate((False, True)):
                win, window = windowed_ids(
                    model, processor, xn if normalised else x, window_ms, left_ms, lookahead_ms, normalised
                )
                assert len(win) >= n, "the clip's tail of silence lets the windows cover its speech"
                win = win[:n]
                same = [a == b for a, b in zip(win, ids[:n], strict=True)]
                agree[variant] += sum(same)
                cers[variant].append(cer(greedy(win), ref))
                if not normalised:
                    for k, ok in enumerate(same):
                        by_third[min(2, 3 * (k % window) // window)] += (ok, 1)
                    truth_windowed.append(cer(greedy(win), text))
            total += n
            truth_whole.append(cer(ref, text))
        row = {
            "window_ms": window_ms,
            "left_context_ms": left_ms,
            "lookahead_ms": lookahead_ms,
            "frame_agreement": agree[0] / total,
            "frame_agreement_by_third": [round(a / max(1, k), 4) for a, k in by_third],
            "cer_windowed_vs_whole": float(np.mean(cers[0])),
            "clips_identical": float(np.mean([c == 0 for c in cers[0]])),
            "cer_whole_vs_truth": float(np.mean(truth_whole)),
            "cer_windowed_vs_truth": float(np.mean(truth_windowed)),
            "frame_agreement_clip_normalised": agree[1] / total,
            "cer_windowed_vs_whole_clip_normalised": float(np.mean(cers[1])),
        }
        rows.append(row)
        thirds = "/".join(f"{a:.3f}" for a in row["frame_agreement_by_third"])
        print(
            f"window {window_ms:5d} ms  left {left_ms:5d} ms  look-ahead {lookahead_ms:4d} ms  "
            f"frames agree {row['frame_agreement']:.4f} (window thirds {thirds})  "
            f"CER windowed/whole {row['cer_windowed_vs_whole']:.4f}  identical {row['clips_identical']:.2f}  "
            f"CER vs truth: whole {row['cer_whole_vs_truth']:.4f}, windowed {row['cer_windowed_vs_truth']:.4f}  "
            f"| input normalised per clip: frames agree {row['frame_agreement_clip_normalised']:.4f}, "
            f"CER windowed/whole {row['cer_windowed_vs_whole_clip_normalised']:.4f}",
            flush=True,
        )
    return rows


def check_server(cache: Path, model, processor, clips) -> int:
    """Stream clips (FLOAT32, exact samples, vad "none": one segment from sample 0) to a server
    with the toy model at the default settings; every interim transcript must be the greedy
    decode of a whole number of this script's windows. Returns the interims checked."""
    import grpc

    sys.path.insert(0, str(ROOT / "tests"))
    from modelplex.testing import running_server
    from modelplex_client.pb import speech_recognition_pb2 as pb
    from modelplex_client.pb import speech_recognition_pb2_grpc as pb_grpc

    entry = {"spec": "hf-wav2vec2", "name": "toy", "weights": str(cache), "devices": ["cpu"], "vad": "none"}
    window_ms, left_ms, lookahead_ms = SETTINGS[0]
    checked = 0
    with running_server({"models": [entry]}) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.SpeechRecognitionStub(channel)
        for x, _, _ in clips:
            cfg = pb.RecognitionConfig(encoding=pb.RecognitionConfig.AUDIO_ENCODING_FLOAT32, sample_rate_hz=RATE)
            data = x.astype("<f4").tobytes()
            messages = [
                pb.StreamingRecognizeRequest(
                    streaming_config=pb.StreamingRecognitionConfig(model="toy", config=cfg, interim_results=True)
                )
            ]
            messages += [
                pb.StreamingRecognizeRequest(audio_content=data[i : i + 6400]) for i in range(0, len(data), 6400)
            ]
            interims = [
                r.alternatives[0].transcript
                for m in stub.StreamingRecognize(iter(messages), timeout=300)
                for r in m.results
                if not r.is_final
            ]
            win, window = windowed_ids(model, processor, x, window_ms, left_ms, lookahead_ms)
            prefixes = {greedy(win[: k * window]) for k in range(1, len(win) // window + 1)}
            missing = [t for t in interims if t not in prefixes]
            if missing or not interims:
                raise SystemExit(f"the server's interim {missing[:1]} is no prefix of the reproduction's windows")
            checked += len(interims)
    print(f"server check: {checked} interim transcripts of {len(clips)} streams, each a prefix of the windows here")
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-minutes", type=float, default=8.0)
    parser.add_argument("--target-cer", type=float, default=0.03)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="default: benchmarks/results/speech-window-toy[-crops]")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--crops", action="store_true", help="train on random crops too (half the clips)")
    parser.add_argument("--check-server", type=int, default=3, help="clips streamed through a server (0: none)")
    parser.add_argument("--score-tail", action="store_true", help="score 1 s of the silence after each clip too")
    args = parser.parse_args()
    args.cache = args.cache or RESULTS / ("speech-window-toy-crops" if args.crops else "speech-window-toy")
    torch.set_num_threads(args.threads)
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    held_out = [toy_clip(np.random.default_rng(10_000 + i), 4) for i in range(24)]
    if args.retrain or not (args.cache / "config.json").is_file():
        training = train(args.cache, args.train_minutes, args.target_cer, held_out, args.crops)
    else:
        training = json.loads((args.cache / "training.json").read_text())
        print(f"reusing {args.cache} ({training['steps']} steps, held-out CER {training['held_out_cer']:.3f})")
    model = Wav2Vec2ForCTC.from_pretrained(args.cache).eval()
    processor = Wav2Vec2Processor.from_pretrained(args.cache)
    # Longer clips than training (6-10 words), with a tail of silence the windows cover.
    tail = (max(w for w, _, _ in SETTINGS) + max(a for _, _, a in SETTINGS)) / 1000 + 1.2
    rng = np.random.default_rng(20_000)
    clips = [toy_clip(rng, int(rng.integers(6, 11)), tail_s=tail) for _ in range(args.clips)]
    seconds = sum(len(x) for x, _, _ in clips) / RATE
    print(f"{len(clips)} held-out clips, {seconds:.0f} s in all, {seconds / len(clips):.1f} s each")
    rows = measure(model, processor, clips, args.score_tail)
    checked = check_server(args.cache, model, processor, clips[: args.check_server]) if args.check_server else 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"speech_window_agreement{'_crops' if args.crops else ''}{'_tail' if args.score_tail else ''}.json"
    summary = {k: v for k, v in training.items() if k != "log"}
    out.write_text(json.dumps({"training": summary, "clips": len(clips), "server_interims": checked, "rows": rows}))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
