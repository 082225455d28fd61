"""modelplex.audio.StreamResampler: any chunking of a signal resamples to what
torchaudio.functional.resample gives for the whole signal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from modelplex.audio import StreamResampler

RATES = [(8000, 16000), (44100, 16000), (22050, 16000), (16000, 48000), (48000, 8000), (16000, 22050)]


def _signal(rate: int, seconds: float, seed: int) -> torch.Tensor:
    """Noise plus a tone: energy across the band, so a wrong kernel tap or offset shows."""
    g = torch.Generator().manual_seed(seed)
    n = int(rate * seconds)
    t = torch.arange(n) / rate
    return 0.3 * torch.randn(n, generator=g) + 0.5 * torch.sin(2 * torch.pi * 440.0 * t)


def _stream(r: StreamResampler, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Push x in blocks of the given sizes (cycled), then finish."""
    parts, i, k = [], 0, 0
    while i < x.numel():
        size = sizes[k % len(sizes)]
        parts.append(r.push(x[i : i + size]))
        i, k = i + size, k + 1
    parts.append(r.finish())
    return torch.cat(parts)


@pytest.mark.parametrize("orig,new", RATES)
@pytest.mark.parametrize("seconds_per_chunk", [None, 0.001, 0.02, 0.1, 1.0])
def test_any_chunking_equals_a_one_shot_resample(orig, new, seconds_per_chunk):
    x = _signal(orig, 1.37, seed=orig + new)
    want = AF.resample(x, orig, new)
    sizes = [x.numel()] if seconds_per_chunk is None else [max(1, int(orig * seconds_per_chunk))]
    got = _stream(StreamResampler(orig, new), x, sizes)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("orig,new", RATES)
def test_one_sample_at_a_time_and_ragged_blocks_with_empty_pushes(orig, new):
    x = _signal(orig, 0.05, seed=1)
    want = AF.resample(x, orig, new)
    torch.testing.assert_close(_stream(StreamResampler(orig, new), x, [1]), want, atol=1e-5, rtol=0)
    # Ragged sizes, zeros among them (empty pushes), and blocks longer than a kernel.
    ragged = _stream(StreamResampler(orig, new), x, [0, 3, 0, 0, 517, 1, 0, 64, 2048, 7])
    torch.testing.assert_close(ragged, want, atol=1e-5, rtol=0)


def test_output_comes_as_soon_as_its_input_is_in_and_finish_flushes_the_tail():
    orig, new = 44100, 16000
    x = _signal(orig, 0.5, seed=2)
    r = StreamResampler(orig, new)
    first = r.push(x[:10_000])
    # Everything but the kernel's reach past the input is out before the end is known...
    assert 0 < first.numel() <= 10_000 * new // orig
    assert 10_000 * new / orig - first.numel() < 2 * (r._width + r._orig)  # noqa: SLF001 - the kernel's reach
    assert r.push(torch.zeros(0)).numel() == 0  # an empty push adds nothing
    rest = r.push(x[10_000:])
    tail = r.finish()
    # ...and finish hands out the tail, up to torchaudio's length exactly.
    assert tail.numel() > 0
    want = AF.resample(x, orig, new)
    assert first.numel() + rest.numel() + tail.numel() == want.numel() == r.emitted
    torch.testing.assert_close(torch.cat([first, rest, tail]), want, atol=1e-5, rtol=0)
    assert r.received == x.numel()
    with pytest.raises(RuntimeError, match="ended"):
        r.push(x[:10])


def test_push_final_is_push_then_finish_and_arrays_are_accepted():
    x = _signal(8000, 0.2, seed=3)
    r = StreamResampler(8000, 16000)
    got = torch.cat([r.push(x[:700].numpy()), r.push(np.asarray(x[700:]), final=True)])
    torch.testing.assert_close(got, AF.resample(x, 8000, 16000), atol=1e-5, rtol=0)


def test_short_and_empty_signals_match_torchaudio():
    for n in (1, 2, 5, 440, 441, 442):
        x = _signal(44100, 1.0, seed=n)[:n]
        r = StreamResampler(44100, 16000)
        torch.testing.assert_close(_stream(r, x, [1]), AF.resample(x, 44100, 16000), atol=1e-5, rtol=0)
    assert StreamResampler(22050, 16000).finish().numel() == 0


def test_the_filter_parameters_are_torchaudios():
    x = _signal(22050, 0.3, seed=4)
    r = StreamResampler(22050, 16000, lowpass_filter_width=16, rolloff=0.85)
    want = AF.resample(x, 22050, 16000, lowpass_filter_width=16, rolloff=0.85)
    torch.testing.assert_close(_stream(r, x, [333]), want, atol=1e-5, rtol=0)
    # A different filter gives a different signal: the parameters reach the kernel.
    assert (want - AF.resample(x, 22050, 16000)).abs().max() > 1e-3


def test_equal_rates_pass_blocks_through():
    x = torch.randn(1000)
    r = StreamResampler(16000, 16000)
    assert r.push(x) is x and r.finish().numel() == 0 and r.received == 1000


def test_the_module_is_task_free_and_imports_no_torch():
    import ast

    import modelplex.audio

    tree = ast.parse(open(modelplex.audio.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in imported if m.startswith("modelplex")], imported
    code = "import sys, modelplex.audio; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
