"""The thread side of speech recognition: what one step does for the sessions of an instance.

For each session it takes the audio pushed since the last step, resamples it to the
model's rate (exactly as a whole-clip resample would), runs the voice-activity detector
over up to :data:`STEP_AUDIO_S` seconds of it, and notes the segments that ended. Then,
for all sessions together: one pass of the model over each ended segment (its final
result); for CTC models, the windows of each open segment that are complete (windows of
equal length run as one batch); for whole-segment models, a re-decode of the open segment
when ``interim_interval_ms`` of new audio came in. Each session gets at most one update per
step: its finals in order, then its open segment's interim result.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelplex.errors import ModelplexError
from modelplex.server.runtimes.base import inference_error
from modelplex.tasks.speech_recognition.audio import StreamResampler
from modelplex.tasks.speech_recognition.beam import BeamDecoder
from modelplex.tasks.speech_recognition.ctc import greedy_transcript
from modelplex.tasks.speech_recognition.interface import SpeechRecognizer, Transcript, Word
from modelplex.tasks.speech_recognition.segmenter import Segmenter, SegmentPolicy
from modelplex.tasks.speech_recognition.session import (
    AudioBuffer,
    OpenSegment,
    RecognitionResult,
    RecognitionStream,
    RecognitionUpdate,
)
from modelplex.tasks.speech_recognition.vad import Vad

log = logging.getLogger(__name__)

__all__ = ["STEP_AUDIO_S", "Plan", "Stepper"]

STEP_AUDIO_S = 2.0
"""Audio one step processes per session at most, so that a client sending faster than real
time shares the instance fairly and a step stays short (new sessions join between steps)."""

Event = tuple[RecognitionStream, RecognitionUpdate | BaseException]


@dataclass(frozen=True)
class Plan:
    """A model's stream processing, in samples and frames at its rate."""

    sample_rate: int
    streaming: bool
    policy: SegmentPolicy
    window: int = 0
    """CTC: frames per window."""
    left: int = 0
    lookahead: int = 0
    samples_per_frame: int = 1
    interim_interval: int = 0
    """Whole-segment models: samples between re-decodes; 0 for none."""


@dataclass
class StreamState:
    """A session's state on the instance's thread."""

    resampler: StreamResampler
    vad_state: Any
    segmenter: Segmenter
    audio: AudioBuffer = field(default_factory=AudioBuffer)
    vad_pos: int = 0
    """Model-rate samples the VAD has covered: everything before is decided."""
    flushed: bool = False
    open: OpenSegment = field(default_factory=OpenSegment)
    finals: list[RecognitionResult] = field(default_factory=list)
    ended: list[tuple[int, int, int]] = field(default_factory=list)
    """Segments that ended in this step: (index, start, end)."""
    vad_frame: int = 512

    def pending(self) -> bool:
        return self.audio.end - self.vad_pos >= self.vad_frame


class Stepper:
    """The step and release functions of one model's step scheduler."""

    def __init__(self, name: str, plan: Plan, vad: Callable[[], Vad], beam: BeamDecoder | None = None) -> None:
        self.name = name
        self.plan = plan
        self.beam = beam
        """CTC models with ``decoder = "beam"``: decodes the finals (interim results stay greedy)."""
        self._make_vad = vad
        self._vad: Vad | None = None

    @property
    def vad(self) -> Vad:
        if self._vad is None:  # built on the instance's thread, at the first step
            self._vad = self._make_vad()
        return self._vad

    def _error(self, e: BaseException) -> BaseException:
        return e if isinstance(e, ModelplexError) else inference_error(self.name, e)

    # -- the step -------------------------------------------------------------------------

    def step(
        self,
        model: SpeechRecognizer,
        joining: Sequence[RecognitionStream],
        running: Sequence[RecognitionStream],
        leaving: Sequence[RecognitionStream],
    ) -> list[Event]:
        """On the instance's thread: free the leavers, admit the joiners, advance all."""
        self.release(model, leaving)
        events: list[Event] = []
        batch: list[RecognitionStream] = []
        for s in (*running, *joining):
            try:
                if s.state is None:
                    s.state = self._admit(s)
                self._advance(s)
            except Exception as e:
                s.done = True
                events.append((s, self._error(e)))
                self.release(model, [s])
                continue
            batch.append(s)
        failed: dict[RecognitionStream, BaseException] = {}
        interims: dict[RecognitionStream, RecognitionResult] = {}
        self._finals(model, batch, failed)
        if self.plan.streaming:
            self._windows(model, batch, failed, interims)
        else:
            self._redecodes(model, batch, failed, interims)
        for s in batch:
            if s in failed:
                s.done = True
                events.append((s, failed[s]))
                self.release(model, [s])
                continue
            events.append((s, self._update(s, interims.get(s))))
            if s.done:
                self.release(model, [s])
        return events

    def release(self, model: SpeechRecognizer, sessions: Sequence[RecognitionStream]) -> None:
        """Free the sessions' audio and detector state; never raises."""
        for s in sessions:
            s.state = None

    def _admit(self, s: RecognitionStream) -> StreamState:
        vad = self.vad
        return StreamState(
            resampler=StreamResampler(s.options.format.sample_rate, self.plan.sample_rate),
            vad_state=vad.new_state(),
            segmenter=Segmenter(self.plan.policy),
            vad_frame=vad.frame,
        )

    # -- per session: input, detector, segments -------------------------------------------

    def _advance(self, s: RecognitionStream) -> None:
        """Take the new audio, resample it, run the detector over what the step may cover."""
        import torch

        st = s.state
        chunks = s.take_input()
        if chunks:
            raw = torch.from_numpy(chunks[0] if len(chunks) == 1 else _concat(chunks))
            st.audio.append(st.resampler.push(raw))
        if s.finishing and not s.has_input and not st.flushed:
            st.audio.append(st.resampler.push(torch.zeros(0), final=True))
            st.flushed = True
        vad = self.vad
        budget = int(STEP_AUDIO_S * self.plan.sample_rate)
        n = min((st.audio.end - st.vad_pos) // vad.frame, max(1, budget // vad.frame))
        st.ended = []
        if n > 0:
            frames = st.audio.slice(st.vad_pos, st.vad_pos + n * vad.frame).reshape(n, vad.frame)
            probs, st.vad_state = vad.scores(st.vad_state, frames)
            for prob in probs:
                start, st.vad_pos = st.vad_pos, st.vad_pos + vad.frame
                span = st.segmenter.feed(start, st.vad_pos, prob)
                if span is not None:
                    self._end_segment(st, *span)
        if st.flushed and st.audio.end - st.vad_pos < vad.frame:
            st.vad_pos = st.audio.end  # the last partial frame: decided by the end of the stream
            if st.segmenter.speech and st.segmenter.start < st.audio.end:
                self._end_segment(st, st.segmenter.start, st.audio.end)
                st.segmenter.speech = False
            s.done = True
        if s.options.single_utterance and st.ended:
            st.ended = st.ended[:1]
            s.done = True

    def _end_segment(self, st: StreamState, start: int, end: int) -> None:
        st.ended.append((st.open.index, start, end))
        st.open = OpenSegment(index=st.open.index + 1)

    # -- the model passes, over every session together ------------------------------------

    def _finals(self, model: SpeechRecognizer, batch: Sequence[RecognitionStream], failed: dict) -> None:
        jobs: dict[str, list[tuple[RecognitionStream, int, int, int]]] = defaultdict(list)
        for s in batch:
            s.state.finals = []
            for index, start, end in s.state.ended:
                jobs[s.options.language].append((s, index, start, end))
        rate = self.plan.sample_rate
        for language, items in jobs.items():
            try:
                segments = [s.state.audio.slice(a, b) for s, _, a, b in items]
                got = self._beam_search(model, segments) if self.beam else model.transcribe(segments, language)
                if len(got) != len(items):
                    raise RuntimeError(f"transcribe returned {len(got)} transcripts for {len(items)} segments")
            except Exception as e:
                for s, *_ in items:
                    failed[s] = self._error(e)
                continue
            for (s, index, a, b), t in zip(items, got, strict=True):
                s.state.finals.append(_result(t, True, a / rate, b / rate, index, s.options.word_offsets))

    def _beam_search(self, model: Any, segments: list[Any]) -> list[Transcript]:
        """One pass of the model over each segment, then the beam search over its emissions."""
        assert self.beam is not None
        # One call per segment, as CTCRecognizer.transcribe does: emissions() takes equal lengths.
        return [self.beam.decode(model.emissions([segment])[0]) for segment in segments]

    def _windows(self, model: Any, batch: Sequence[RecognitionStream], failed: dict, interims: dict) -> None:
        """CTC models: run every complete window of each open segment; equal lengths batch."""
        p = self.plan
        spf = p.samples_per_frame
        planned: dict[RecognitionStream, list[Any]] = {}
        by_length: dict[int, list[tuple[RecognitionStream, int, Any, int]]] = defaultdict(list)
        for s in batch:
            st = s.state
            if s.done or not st.segmenter.speech or not s.options.interim_results:
                continue
            seg = st.segmenter.start
            decoded = len(st.open.frames)
            k = 0
            while seg + (decoded + p.window + p.lookahead) * spf <= st.vad_pos:
                first = max(0, decoded - p.left)
                x = st.audio.slice(seg + first * spf, seg + (decoded + p.window + p.lookahead) * spf)
                by_length[len(x)].append((s, k, x, decoded - first))
                decoded += p.window
                k += 1
            if k:
                planned[s] = [None] * k
        for items in by_length.values():
            try:
                out = model.emissions([x for _, _, x, _ in items])
                if len(out) != len(items):
                    raise RuntimeError(f"emissions returned {len(out)} results for {len(items)} inputs")
                for (s, k, _, skip), e in zip(items, out, strict=True):
                    if len(e) < skip + p.window:
                        raise RuntimeError(
                            f"emissions gave {len(e)} frames for a window; expected at least "
                            f"{skip + p.window} (samples_per_frame {spf})"
                        )
                    planned[s][k] = e[skip : skip + p.window].argmax(-1).tolist()
            except Exception as e:
                for s, *_ in items:
                    failed[s] = self._error(e)
        frame_s = spf / p.sample_rate
        for s, windows in planned.items():
            if s in failed:
                continue
            st = s.state
            for ids in windows:  # in order: windows of different lengths ran in different batches
                st.open.frames.extend(ids)
            t = greedy_transcript(model, st.open.frames, frame_s)
            start = st.segmenter.start
            interim = self._interim(s, t, start, start + len(st.open.frames) * spf)
            if interim is not None:
                interims[s] = interim

    def _redecodes(
        self, model: SpeechRecognizer, batch: Sequence[RecognitionStream], failed: dict, interims: dict
    ) -> None:
        """Whole-segment models: re-decode each open segment that grew by the interval."""
        every = self.plan.interim_interval
        jobs: dict[str, list[tuple[RecognitionStream, int, int]]] = defaultdict(list)
        for s in batch:
            st = s.state
            if s.done or not every or not st.segmenter.speech or not s.options.interim_results:
                continue
            start = st.segmenter.start
            if st.vad_pos - max(start, st.open.decoded_to) >= every:
                jobs[s.options.language].append((s, start, st.vad_pos))
        for language, items in jobs.items():
            try:
                got = model.transcribe([s.state.audio.slice(a, b) for s, a, b in items], language)
            except Exception as e:
                for s, *_ in items:
                    failed[s] = self._error(e)
                continue
            if len(got) != len(items):
                for s, *_ in items:
                    failed[s] = inference_error(self.name, RuntimeError("transcribe returned too few transcripts"))
                continue
            for (s, a, b), t in zip(items, got, strict=True):
                s.state.open.decoded_to = b
                interim = self._interim(s, t, a, b)
                if interim is not None:
                    interims[s] = interim

    def _interim(self, s: RecognitionStream, t: Transcript, start: int, end: int) -> RecognitionResult | None:
        """The open segment's interim result; None when its transcript did not change."""
        rate = self.plan.sample_rate
        previous = s.state.open.last_text
        if previous == t.text:
            return None
        s.state.open.last_text = t.text
        same = len(os.path.commonprefix([previous or "", t.text]))
        stability = same / len(t.text) if t.text else 1.0
        result = _result(t, False, start / rate, end / rate, s.state.open.index, s.options.word_offsets)
        return RecognitionResult(
            result.transcript, False, result.start_s, result.end_s, result.segment, stability, result.words
        )

    def _update(self, s: RecognitionStream, interim: RecognitionResult | None) -> RecognitionUpdate:
        """The session's message of this step (maybe empty: it still tells the loop that the
        stream moved on), and trim its audio."""
        st = s.state
        results = list(st.finals)
        if interim is not None:
            results.append(interim)
        st.audio.drop_before(st.segmenter.start)  # the final pass needs the whole open segment
        s.decided_s = st.vad_pos / self.plan.sample_rate
        end_of_utterance = s.options.single_utterance and bool(st.finals)
        return RecognitionUpdate(tuple(results), st.vad_pos / self.plan.sample_rate, end_of_utterance)


def _result(t: Transcript, final: bool, start: float, end: float, index: int, words: bool) -> RecognitionResult:
    shifted = tuple(Word(w.text, start + w.start_s, start + w.end_s) for w in t.words) if words else ()
    return RecognitionResult(t.text, final, start, end, index, 0.0, shifted, t.confidence)


def _concat(chunks: list[Any]) -> Any:
    import numpy as np

    return np.concatenate(chunks)
