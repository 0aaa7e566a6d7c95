"""Acoustic extractors: openSMILE (eGeMAPS, ComParE) and log-Mel statistics.

Audio is read once per file, mixed down to mono float32 in [-1, 1) (int16 and float files
alike) and resampled when asked; segments are fed to the backend as signals, so a segment
gives the same numbers whether it came from a file or from a signal.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from features.base import ExtractionError, Extractor, Params, Sample, Segment, feature_frame
from features.registry import EXTRACTORS

SILENCE_PEAK = 1e-4


def load_audio(path: str | Path, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32, optionally resampled.

    Raises:
        ExtractionError: naming the file when it cannot be decoded or holds no samples.
    """
    import soundfile as sf

    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise ExtractionError(f"{path}: cannot decode audio ({err}); expected a readable "
                              "WAV/FLAC/OGG file") from None
    if data.shape[0] == 0:
        raise ExtractionError(f"{path}: audio has zero samples")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sampling_rate is not None and sr != sampling_rate:
        signal = resample(signal, sr, sampling_rate)
        sr = sampling_rate
    return np.ascontiguousarray(signal, dtype=np.float32), int(sr)


def resample(signal: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import audresample

    return audresample.resample(signal, sr_in, sr_out)[0].astype(np.float32)


def cut_segments(
    signal: np.ndarray, sr: int, segments: Sequence[Segment] | None, path: Path
) -> tuple[list[tuple[float, float]], list[np.ndarray], list[str]]:
    """Slice `signal` by segments (None: the whole signal), clipping at its end.

    Returns:
        spans (start, end) in seconds, the signal chunks, and warnings about clipped or
        dropped segments.
    """
    duration = len(signal) / sr
    warnings: list[str] = []
    if float(np.max(np.abs(signal))) < SILENCE_PEAK:
        warnings.append(f"{path}: audio is silent (peak amplitude below {SILENCE_PEAK})")
    if segments is None:
        return [(0.0, duration)], [signal], warnings
    spans, chunks = [], []
    beyond = clipped = 0
    for seg in segments:
        if seg.start >= duration:
            beyond += 1
            continue
        end = seg.end
        if end > duration + 1.0 / sr:
            clipped += 1
            end = duration
        a, b = int(round(seg.start * sr)), int(round(end * sr))
        spans.append((seg.start, end))
        chunks.append(signal[a:b])
    if beyond:
        warnings.append(f"{path}: {beyond} segment(s) start after the audio ends "
                        f"({duration:.2f} s); no rows for them")
    if clipped:
        warnings.append(f"{path}: {clipped} segment(s) end after the audio ends; cut at {duration:.2f} s")
    if not spans:
        raise ExtractionError(f"{path}: no segment lies within the audio ({duration:.2f} s long)")
    return spans, chunks, warnings


class OpenSmileParams(Params):
    feature_set: Literal["eGeMAPSv02", "ComParE_2016", "GeMAPSv01b", "eGeMAPSv01b"] = "eGeMAPSv02"
    level: Literal["functionals", "lld"] = "functionals"
    sampling_rate: int | None = 16000


@functools.lru_cache(maxsize=8)
def _smile(feature_set: str, level: str):
    import opensmile

    feature_level = (opensmile.FeatureLevel.Functionals if level == "functionals"
                     else opensmile.FeatureLevel.LowLevelDescriptors)
    return opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                           feature_level=feature_level)


@EXTRACTORS.register("opensmile")
class OpenSmileExtractor(Extractor):
    """openSMILE features per segment: functionals (one row per segment) or low-level
    descriptors (one row per 10 ms frame, with the frame's times).

    Args:
        feature_set: eGeMAPSv02 (88 functionals / 25 LLDs) or ComParE_2016 (6,373 / 65).
        level: "functionals" or "lld".
        sampling_rate: resample to this rate first (None keeps the file's rate).
    """

    name = "opensmile"
    version = "1"
    modality = "audio"
    media = ("audio",)
    Params = OpenSmileParams

    @property
    def feature_names(self) -> list[str]:
        return list(_smile(self.params.feature_set, self.params.level).feature_names)

    def library_versions(self) -> dict[str, str]:
        import opensmile

        return {"opensmile": opensmile.__version__}

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        path = self.source_files(sample)["audio"]
        signal, sr = load_audio(path, self.params.sampling_rate)
        return self.process_signal(signal, sr, segments, sample.sample_id, path)

    def process_signal(self, signal: np.ndarray, sampling_rate: int,
                       segments: Sequence[Segment] | None = None, sample_id: str = "signal",
                       path: Path | str = "<signal>") -> pd.DataFrame:
        """Features of an in-memory mono signal, segment by segment."""
        signal = np.asarray(signal)
        if signal.ndim == 2:  # (samples, channels) → mono
            signal = signal.mean(axis=1)
        if np.issubdtype(signal.dtype, np.integer):
            signal = signal.astype(np.float32) / np.float32(np.iinfo(signal.dtype).max + 1)
        signal = signal.astype(np.float32, copy=False)
        if self.params.sampling_rate is not None and sampling_rate != self.params.sampling_rate:
            signal = resample(signal, sampling_rate, self.params.sampling_rate)
            sampling_rate = self.params.sampling_rate
        smile = _smile(self.params.feature_set, self.params.level)
        spans, chunks, warnings = cut_segments(signal, sampling_rate, segments, Path(path))
        rows, values, n_short = [], [], 0
        for (start, end), chunk in zip(spans, chunks, strict=True):
            if len(chunk) < int(0.02 * sampling_rate):
                n_short += 1  # shorter than one analysis frame: openSMILE has nothing to measure
                continue
            out = smile.process_signal(chunk, sampling_rate)
            if self.params.level == "functionals":
                rows.append((start, end))
            else:
                starts = out.index.get_level_values("start").total_seconds().to_numpy()
                ends = out.index.get_level_values("end").total_seconds().to_numpy()
                rows.extend(zip(start + starts, start + ends, strict=True))
            values.append(out.to_numpy(dtype=np.float32))
        if n_short:
            warnings.append(f"{path}: {n_short} segment(s) shorter than 20 ms skipped")
        if not values:
            raise ExtractionError(f"{path}: every segment is shorter than one 20 ms frame")
        frame = feature_frame(sample_id, rows, np.concatenate(values), smile.feature_names)
        frame.attrs["warnings"] = warnings
        return frame
