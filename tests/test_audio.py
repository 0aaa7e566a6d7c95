"""openSMILE extractor: segments, signal/file equivalence, formats, bad audio."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import tone, write_wav

from features.audio import OpenSmileExtractor, load_audio
from features.base import ExtractionError, Sample, Segment


def test_functionals_per_segment_with_times(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(3.0))
    ext = OpenSmileExtractor()
    segs = [Segment(0.0, 1.0), Segment(1.5, 2.5)]
    df = ext.process_file(path, segs, sample_id="a")
    assert df.shape == (2, 88)
    assert list(df.index) == [("a", 0.0, 1.0), ("a", 1.5, 2.5)]
    f0 = 27.5 * 2 ** (df["F0semitoneFrom27.5Hz_sma3nz_amean"] / 12)
    assert np.allclose(f0, 150, rtol=0.05)


def test_file_and_signal_give_the_same_numbers(tmp_path):
    sig = tone(2.5, f0=180, sr=16000)
    path = write_wav(tmp_path / "a.wav", sig)
    ext = OpenSmileExtractor()
    segs = [Segment(0.2, 1.4), Segment(1.0, 2.5)]
    from_file = ext.process_file(path, segs, sample_id="x")
    import soundfile as sf
    int16, sr = sf.read(path, dtype="int16")  # the file's own integer samples
    from_int16 = ext.process_signal(int16, sr, segs, sample_id="x")
    from_float, _ = load_audio(path)
    from_float = ext.process_signal(from_float, sr, segs, sample_id="x")
    np.testing.assert_allclose(from_file.to_numpy(), from_float.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(from_file.to_numpy(), from_int16.to_numpy(), rtol=1e-6)
    # and openSMILE's own file reader agrees
    import opensmile
    ref = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02).process_file(
        str(path), start=0.2, end=1.4)
    np.testing.assert_allclose(from_file.iloc[0].to_numpy(), ref.iloc[0].to_numpy(), rtol=1e-4, atol=1e-5)


def test_stereo_and_other_rates_are_mixed_down_and_resampled(tmp_path):
    mono = tone(2.0, f0=200, sr=44100)
    stereo = np.stack([mono, mono], axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, sr=44100)
    signal, sr = load_audio(path, 16000)
    assert signal.ndim == 1 and sr == 16000 and abs(len(signal) - 32000) <= 1
    df = OpenSmileExtractor().process_file(path)
    f0 = 27.5 * 2 ** (df["F0semitoneFrom27.5Hz_sma3nz_amean"].iloc[0] / 12)
    assert f0 == pytest.approx(200, rel=0.05)


def test_lld_rows_carry_frame_times(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(2.0))
    df = OpenSmileExtractor(level="lld").process_file(path, [Segment(0.5, 1.5)], sample_id="a")
    starts = df.index.get_level_values("start").to_numpy()
    assert df.shape[1] == 25 and 95 <= len(df) <= 101
    assert starts[0] == pytest.approx(0.5) and np.allclose(np.diff(starts), 0.01)


def test_segments_beyond_the_audio_are_warned_about(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(2.0))
    df = OpenSmileExtractor().process_file(path, [Segment(0.0, 1.0), Segment(1.5, 3.0), Segment(5, 6)])
    assert [round(e, 3) for e in df.index.get_level_values("end")] == [1.0, 2.0]
    warnings = df.attrs["warnings"]
    assert any("start after the audio ends" in w for w in warnings)
    assert any("cut at 2.00 s" in w for w in warnings)


def test_a_segment_too_short_for_the_functionals_is_said_once_in_the_record(tmp_path, recwarn):
    path = write_wav(tmp_path / "a.wav", tone(2.0))
    segs = [Segment(0.0, 1.0), Segment(1.2, 1.23), Segment(1.5, 1.53)]  # 30 ms: one frame, no functionals
    df = OpenSmileExtractor().process_file(path, segs, sample_id="a")
    assert len(df) == 3 and df.iloc[1:].isna().all(axis=None) and df.iloc[0].notna().all()
    notes = [w for w in df.attrs["warnings"] if "too short for openSMILE" in w]
    assert len(notes) == 1 and notes[0].startswith(f"{path}: 2 segment(s)") and "missing (NaN), not zero" in notes[0]
    assert not [w for w in recwarn if "too short" in str(w.message)]  # openSMILE's own warning is not repeated


@pytest.mark.parametrize("content,match", [
    (b"", "cannot decode audio"),
    (b"RIFF$\x00\x00\x00WAVEfmt garbage", "cannot decode audio"),
])
def test_corrupt_audio_names_the_file(tmp_path, content, match):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(ExtractionError, match=match) as err:
        OpenSmileExtractor().process_sample(Sample("b", "b", {"audio": path}), None)
    assert "bad.wav" in str(err.value)


def test_zero_length_and_silent_audio(tmp_path):
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(ExtractionError, match="empty.wav: audio has zero samples"):
        OpenSmileExtractor().process_file(empty)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    df = OpenSmileExtractor().process_file(silent)
    assert any("silent" in w for w in df.attrs["warnings"])


def test_missing_media_role():
    from features.base import MissingMediaError
    with pytest.raises(MissingMediaError, match="has no audio file"):
        OpenSmileExtractor().source_files(Sample("x", "x", {"transcript": "t.csv"}))


# --- bad float audio and truncated files -------------------------------------------------------

def test_float_audio_with_nan_or_inf_is_a_per_sample_error(tmp_path):
    x = tone(1.0)
    for bad, name in ((np.nan, "nan.wav"), (np.inf, "inf.wav")):
        y = x.copy()
        y[100:110] = bad
        path = write_wav(tmp_path / name, y, subtype="FLOAT")
        with pytest.raises(ExtractionError, match=rf"{name}: .*10 NaN/inf sample") as err:
            OpenSmileExtractor().process_sample(Sample("s", "s", {"audio": path}), None)
        assert err.value.path == str(path)
    all_nan = write_wav(tmp_path / "allnan.wav", np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT")
    with pytest.raises(ExtractionError, match="allnan.wav: .*16000 NaN/inf sample"):
        OpenSmileExtractor().process_file(all_nan)
    with pytest.raises(ExtractionError, match="NaN/inf sample"):
        OpenSmileExtractor().process_signal(np.full(16000, np.nan, dtype=np.float32), 16000)


def test_samples_outside_full_scale_are_clipped_with_a_warning(tmp_path):
    x = tone(1.0) * 4  # peak 0.8
    x[:50] = 3.0
    path = write_wav(tmp_path / "hot.wav", x, subtype="FLOAT")
    df = OpenSmileExtractor().process_file(path)
    warning = next(w for w in df.attrs["warnings"] if "outside [-1, 1]" in w)
    assert "hot.wav" in warning and "50 sample" in warning and "peak 3" in warning and "clipped to [-1, 1]" in warning
    clipped = x.copy()
    clipped[:50] = 1.0
    ref = OpenSmileExtractor().process_file(write_wav(tmp_path / "ref.wav", clipped, subtype="FLOAT"))
    np.testing.assert_allclose(df.to_numpy(), ref.to_numpy(), rtol=1e-5)


def test_a_clipped_recording_is_warned_about(tmp_path):
    x = np.clip(tone(1.0) * 10, -1, 1)  # a hot recording, flattened at full scale
    df = OpenSmileExtractor().process_file(write_wav(tmp_path / "flat.wav", x))
    assert any("flat.wav" in w and "full scale" in w for w in df.attrs["warnings"])


def test_a_truncated_wav_is_a_warning_with_both_lengths(tmp_path):
    path = write_wav(tmp_path / "full.wav", tone(2.0))
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 16000])  # header says 32,000 frames; 16,000 remain
    df = OpenSmileExtractor().process_file(cut)
    warning = next(w for w in df.attrs["warnings"] if "truncated" in w)
    assert "cut.wav" in warning and "32000" in warning and "16000" in warning
    assert df.index.get_level_values("end")[0] == pytest.approx(1.0)
