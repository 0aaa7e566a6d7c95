"""Log-Mel statistics: 256 values per segment, matching a torch STFT reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import write_wav

from features.audio import LogMelStatsExtractor, deltas, mel_filterbank
from features.base import Segment


def sine(f: float, seconds: float = 2.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_shape_names_and_tone_band(tmp_path):
    path = write_wav(tmp_path / "a.wav", sine(1000.0))
    ext = LogMelStatsExtractor()
    df = ext.process_file(path, [Segment(0.0, 1.0), Segment(1.0, 2.0)], sample_id="a")
    assert df.shape == (2, 256)
    assert list(df.columns[:2]) == ["logmel00_mean", "logmel01_mean"] and df.columns[-1] == "dlogmel63_std"
    means = df.filter(like="logmel").iloc[0, :64].to_numpy()
    fb = mel_filterbank(16000, 1024, 64, 20.0, 8000.0)
    expected_band = int(np.argmax(fb[int(round(1000 / (16000 / 1024)))]))
    assert int(np.argmax(means)) == expected_band
    # a steady tone: deltas average to ~0
    assert np.abs(df.filter(like="dlogmel").iloc[0, :64].to_numpy()).max() < 0.5


def test_matches_torch_reference():
    rng = np.random.default_rng(0)
    sig = (sine(220.0) + 0.05 * rng.normal(size=32000)).astype(np.float32)
    ext = LogMelStatsExtractor()
    db = ext.log_mel(sig)
    spec = torch.stft(torch.from_numpy(sig), n_fft=1024, hop_length=320, window=torch.hann_window(1024),
                      center=True, pad_mode="reflect", return_complex=True)
    fb = torch.from_numpy(mel_filterbank(16000, 1024, 64, 20.0, 8000.0).astype(np.float32))
    ref = 10 * torch.log10(torch.clamp(((spec.abs() ** 2).T @ fb).T, min=1e-10))
    ref = torch.maximum(ref, ref.max() - 80)
    np.testing.assert_allclose(db, ref.numpy(), atol=1e-3)
    x = torch.from_numpy(db)[None]
    kernel = torch.arange(-2, 3, dtype=x.dtype).repeat(64, 1, 1)
    dref = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (2, 2), mode="replicate"), kernel,
                                      groups=64) / 10
    np.testing.assert_allclose(deltas(db), dref[0].numpy(), atol=1e-4)


def test_top_db_floor_and_short_segments(tmp_path):
    sig = np.concatenate([sine(500.0, 1.0), np.zeros(16000, np.float32)])
    path = write_wav(tmp_path / "a.wav", sig, subtype="FLOAT")
    df = LogMelStatsExtractor().process_file(path, [Segment(0, 2.0), Segment(1.0, 1.01)], sample_id="a")
    db = LogMelStatsExtractor().log_mel(sig)
    assert db.min() == pytest.approx(db.max() - 80, abs=1e-3)
    assert np.isnan(df.iloc[1].to_numpy()).all()
    assert any("shorter than two hops" in w for w in df.attrs["warnings"])


def test_resampling_gives_the_same_features(tmp_path):
    sig16 = sine(300.0, 2.0, 16000)
    sig48 = sine(300.0, 2.0, 48000)
    a = LogMelStatsExtractor().process_file(write_wav(tmp_path / "a.wav", sig16, 16000))
    b = LogMelStatsExtractor().process_file(write_wav(tmp_path / "b.wav", sig48, 48000))
    peak_a = np.argmax(a.iloc[0, :64].to_numpy())
    peak_b = np.argmax(b.iloc[0, :64].to_numpy())
    assert peak_a == peak_b
    np.testing.assert_allclose(a.iloc[0, peak_a], b.iloc[0, peak_b], atol=1.0)
