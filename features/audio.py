"""Acoustic extractors: openSMILE (eGeMAPS, ComParE) and log-Mel statistics.

Audio is read once per file, mixed down to mono float32 in [-1, 1) (int16 and float files
alike) and resampled when asked; segments are fed to the backend as signals, so a segment
gives the same numbers whether it came from a file or from a signal.
"""

from __future__ import annotations

import functools
import hashlib
import warnings as warnings_module  # `warnings` names the per-sample notes below
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import ExtractionError, Extractor, Params, Sample, Segment, feature_frame
from features.registry import EXTRACTORS

SILENCE_PEAK = 1e-4
FULL_SCALE = 0.999  # |x| at or above this counts as full scale
CLIPPED_RUN = 3  # this many consecutive full-scale samples are a clipped peak
CLIPPED_PEAKS = 10  # a recording with this many clipped peaks (or 0.1 % of its samples in them) is clipped


def load_audio(path: str | Path, sampling_rate: int | None = None,
               warnings: list[str] | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 in [-1, 1], optionally resampled.

    Float files are checked: NaN or infinite samples are an error (openSMILE would turn them
    into wrong numbers without a word); samples beyond full scale are clipped to [-1, 1] and
    warned about; so are a clipped recording and a WAV file shorter than its header says.
    Warnings are appended to `warnings` when a list is given.

    Raises:
        ExtractionError: naming the file when it cannot be decoded, holds no samples, or holds
            NaN/inf samples.
    """
    import soundfile as sf

    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise ExtractionError(f"{path}: cannot decode audio ({err}); expected a readable "
                              "WAV/FLAC/OGG file", path) from None
    if data.shape[0] == 0:
        raise ExtractionError(f"{path}: audio has zero samples", path)
    notes = warnings if warnings is not None else []
    declared = declared_wav_frames(path)
    if declared is not None and declared > data.shape[0]:
        notes.append(f"{path}: truncated WAV file: its header declares {declared} frames but only "
                     f"{data.shape[0]} are present ({data.shape[0] / sr:.2f} s); the present ones are used")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    signal = check_signal(signal, path, notes)
    if sampling_rate is not None and sr != sampling_rate:
        signal = resample(signal, sr, sampling_rate)
        sr = sampling_rate
    return np.ascontiguousarray(signal, dtype=np.float32), int(sr)


def check_signal(signal: np.ndarray, path: Path | str, warnings: list[str]) -> np.ndarray:
    """Reject NaN/inf samples, clip samples beyond [-1, 1] (float audio) and warn about a
    clipped recording.

    Raises:
        ExtractionError: when the signal holds NaN or infinite samples.
    """
    bad = ~np.isfinite(signal)
    if bad.any():
        raise ExtractionError(f"{path}: audio holds {int(bad.sum())} NaN/inf sample(s) (first at "
                              f"{int(np.argmax(bad))}); expected finite samples in [-1, 1]",
                              None if str(path).startswith("<") else path)
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    if peak > 1.0:
        n = int((np.abs(signal) > 1.0).sum())
        warnings.append(f"{path}: {n} sample(s) outside [-1, 1] (peak {peak:.3g}); clipped to [-1, 1] "
                        "(openSMILE scales audio to 16-bit integers, which cannot hold them)")
        signal = np.clip(signal, -1.0, 1.0)
    full = np.abs(signal) >= FULL_SCALE
    if full.sum() >= CLIPPED_RUN:
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, full.astype(np.int8), 0])).reshape(-1, 2), axis=1)[:, 0]
        clipped = runs[runs >= CLIPPED_RUN]
        if len(clipped) >= CLIPPED_PEAKS or clipped.sum() >= 1e-3 * len(signal):
            warnings.append(f"{path}: {len(clipped)} run(s) of {CLIPPED_RUN} or more samples at full scale "
                            f"({clipped.sum()} samples): the recording looks clipped, which distorts loudness, "
                            "jitter and shimmer")
    return signal


def declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header's data chunk declares (None for other formats)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    fmt = f.read(size)
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                    f.seek(size % 2, 1)
                elif cid == b"data":
                    if not block_align or size == 0xFFFFFFFF:
                        return None
                    return size // block_align
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None


def resample(signal: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import audresample

    return audresample.resample(signal, sr_in, sr_out)[0].astype(np.float32)


class Augment(Params):
    """A training-time perturbation of the audio, applied before extraction (its features are a
    feature set of their own; `fusion`'s `augment` model uses them for training rows only).

    speed: play the audio this much faster (resampling, as Kaldi's speed perturbation: tempo
        and pitch change together; 0.9 and 1.1 are usual).
    noise_snr: add white Gaussian noise at this signal-to-noise ratio in dB (over the whole
        signal's power), seeded per sample by `seed` and the sample id (reproducible, resumable).
    """

    speed: float = Field(1.0, ge=0.5, le=2.0)
    noise_snr: float | None = Field(None, ge=-10, le=60)
    seed: int = Field(0, ge=0)


def augment_signal(signal: np.ndarray, sr: int, spec: Augment, key: str) -> np.ndarray:
    """`signal` perturbed as `spec` says (the same output for the same sample id `key`)."""
    out = signal
    if spec.speed != 1.0:
        # the samples read as if recorded at sr × speed, resampled back to sr: 1/speed as long
        out = resample(out, int(round(sr * spec.speed)), sr)
    if spec.noise_snr is not None:
        digest = hashlib.blake2b(f"{spec.seed}:{key}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        power = float(np.mean(out.astype(np.float64) ** 2))
        noise = rng.normal(0.0, np.sqrt(power / 10 ** (spec.noise_snr / 10)), len(out))
        out = np.clip(out + noise, -1.0, FULL_SCALE).astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


def augmented(params: Any, signal: np.ndarray, sr: int, sample: Sample, segments) -> np.ndarray:
    """The extractor's signal, augmented when its parameters ask (whole samples only)."""
    if params.augment is None:
        return signal
    if segments is not None and params.augment.speed != 1.0:
        raise ExtractionError(f"sample {sample.sample_id!r}: speed perturbation changes the timeline; it "
                              "applies to whole-sample extraction (segmentation.level: session) only")
    return augment_signal(signal, sr, params.augment, sample.sample_id)


def without_default_augment(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for the store's hash: no `augment` key when there is none (stores written
    before augmentation existed stay valid)."""
    if params.get("augment") is None:
        params.pop("augment", None)
    return params


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
        raise ExtractionError(f"{path}: no segment lies within the audio ({duration:.2f} s long)", path)
    return spans, chunks, warnings


class OpenSmileParams(Params):
    feature_set: Literal["eGeMAPSv02", "ComParE_2016", "GeMAPSv01b", "eGeMAPSv01b"] = "eGeMAPSv02"
    level: Literal["functionals", "lld"] = "functionals"
    sampling_rate: int | None = 16000
    augment: Augment | None = None


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
        augment: perturb the audio first (`Augment`: speed, noise), for training copies.
    """

    name = "opensmile"
    version = "1"
    modality = "audio"
    media = ("audio",)
    Params = OpenSmileParams

    @property
    def feature_names(self) -> list[str]:
        return list(_smile(self.params.feature_set, self.params.level).feature_names)

    def get_params(self) -> dict[str, Any]:
        return without_default_augment(super().get_params())

    def library_versions(self) -> dict[str, str]:
        import opensmile

        return {"opensmile": opensmile.__version__}

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        path = self.source_files(sample)["audio"]
        warnings: list[str] = []
        signal, sr = load_audio(path, self.params.sampling_rate, warnings)
        signal = augmented(self.params, signal, sr, sample, segments)
        frame = self.process_signal(signal, sr, segments, sample.sample_id, path, checked=True)
        frame.attrs["warnings"] = warnings + frame.attrs["warnings"]
        return frame

    def process_signal(self, signal: np.ndarray, sampling_rate: int,
                       segments: Sequence[Segment] | None = None, sample_id: str = "signal",
                       path: Path | str = "<signal>", checked: bool = False) -> pd.DataFrame:
        """Features of an in-memory mono signal, segment by segment (checked like a file's
        samples unless `checked`)."""
        signal = np.asarray(signal)
        if signal.ndim == 2:  # (samples, channels) → mono
            signal = signal.mean(axis=1)
        is_int = np.issubdtype(signal.dtype, np.integer)
        if is_int:
            signal = signal.astype(np.float32) / np.float32(np.iinfo(signal.dtype).max + 1)
        signal = signal.astype(np.float32, copy=False)
        notes: list[str] = []
        if not checked:
            signal = check_signal(signal, path, notes)
        if self.params.sampling_rate is not None and sampling_rate != self.params.sampling_rate:
            signal = resample(signal, sampling_rate, self.params.sampling_rate)
            sampling_rate = self.params.sampling_rate
        smile = _smile(self.params.feature_set, self.params.level)
        spans, chunks, warnings = cut_segments(signal, sampling_rate, segments, Path(path))
        rows, values, n_short, n_nan = [], [], 0, 0
        for (start, end), chunk in zip(spans, chunks, strict=True):
            if len(chunk) < int(0.02 * sampling_rate):
                n_short += 1  # shorter than one analysis frame: openSMILE has nothing to measure
                continue
            with warnings_module.catch_warnings(record=True) as caught:
                warnings_module.simplefilter("always")
                out = smile.process_signal(chunk, sampling_rate)
            n_nan += any("too short" in str(w.message) for w in caught)
            if self.params.level == "functionals":
                rows.append((start, end))
            else:
                starts = out.index.get_level_values("start").total_seconds().to_numpy()
                ends = out.index.get_level_values("end").total_seconds().to_numpy()
                rows.extend(zip(start + starts, start + ends, strict=True))
            values.append(out.to_numpy(dtype=np.float32))
        if n_short:
            warnings.append(f"{path}: {n_short} segment(s) shorter than 20 ms skipped")
        if n_nan:  # openSMILE's own warning, said once per file in the project's record
            warnings.append(f"{path}: {n_nan} segment(s) too short for openSMILE's {self.params.feature_set} "
                            f"{self.params.level}: their features are missing (NaN), not zero")
        if not values:
            raise ExtractionError(f"{path}: every segment is shorter than one 20 ms frame")
        frame = feature_frame(sample_id, rows, np.concatenate(values), smile.feature_names)
        frame.attrs["warnings"] = notes + warnings
        return frame


class LogMelParams(Params):
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 320
    f_min: float = 20.0
    f_max: float | None = None
    top_db: float | None = 80.0
    delta_width: int = 5
    sampling_rate: int = 16000
    level: Literal["stats", "frames"] = "stats"
    augment: Augment | None = None


def mel_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, unnormalised: shape (n_fft // 2 + 1, n_mels)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def deltas(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Regression deltas along the last axis, edges replicated (as torchaudio.compute_deltas)."""
    n = (width - 1) // 2
    denom = n * (n + 1) * (2 * n + 1) / 3
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n, n)], mode="edge")
    t = x.shape[-1]
    return sum(k * (padded[..., n + k:n + k + t] - padded[..., n - k:n - k + t])
               for k in range(1, n + 1)) / denom


@EXTRACTORS.register("logmel")
class LogMelStatsExtractor(Extractor):
    """Log-Mel statistics per segment: mean and standard deviation over time of each of the
    64 log-Mel bands (dB) and of their deltas — 256 values, as in the tri-modal severity
    model (n_fft 1024, hop 320 at 16 kHz, 20 Hz to Nyquist, 80 dB dynamic range); or, with
    `level: frames`, the log-Mel frames themselves (one row per hop, `n_mels` values, for
    frame-sequence models).

    Args:
        n_mels, n_fft, hop_length, f_min, f_max: the mel spectrogram (power, Hann window,
            centred frames, HTK mel scale).
        top_db: floor each segment's dB values this far below its maximum (None: no floor).
        delta_width: frames in the delta regression window.
        sampling_rate: audio is resampled to this rate first.
        augment: perturb the audio first (`Augment`: speed, noise), for training copies.
    """

    name = "logmel"
    version = "1"
    modality = "audio"
    media = ("audio",)
    Params = LogMelParams

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if params["level"] == "stats":
            del params["level"]  # the default: stores written before `level` existed stay valid
        return without_default_augment(params)

    @property
    def feature_names(self) -> list[str]:
        n = self.params.n_mels
        if self.params.level == "frames":
            return [f"logmel{i:02d}" for i in range(n)]
        return ([f"logmel{i:02d}_mean" for i in range(n)] + [f"logmel{i:02d}_std" for i in range(n)]
                + [f"dlogmel{i:02d}_mean" for i in range(n)] + [f"dlogmel{i:02d}_std" for i in range(n)])

    def library_versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    @functools.cached_property
    def _fbank(self) -> np.ndarray:
        p = self.params
        f_max = p.f_max or p.sampling_rate / 2
        return mel_filterbank(p.sampling_rate, p.n_fft, p.n_mels, p.f_min, f_max).astype(np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_fbank", None)  # rebuilt lazily in each worker
        return state

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """Log-Mel spectrogram in dB, shape (n_mels, frames); STFT computed in blocks."""
        p = self.params
        x = np.pad(signal.astype(np.float32), p.n_fft // 2, mode="reflect" if len(signal) > p.n_fft // 2
                   else "constant")
        n_frames = 1 + (len(x) - p.n_fft) // p.hop_length
        window = np.hanning(p.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft)[::p.hop_length][:n_frames]
        out = np.empty((p.n_mels, n_frames), dtype=np.float32)
        block = 4096
        for a in range(0, n_frames, block):
            spec = np.fft.rfft(frames[a:a + block] * window, axis=1)
            power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
            out[:, a:a + block] = (power @ self._fbank).T
        db = 10.0 * np.log10(np.maximum(out, 1e-10))
        if p.top_db is not None:
            db = np.maximum(db, db.max() - p.top_db)
        return db

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        path = self.source_files(sample)["audio"]
        loaded: list[str] = []
        signal, sr = load_audio(path, self.params.sampling_rate, loaded)
        signal = augmented(self.params, signal, sr, sample, segments)
        spans, chunks, warnings = cut_segments(signal, sr, segments, path)
        warnings = loaded + warnings
        if self.params.level == "frames":
            return self._frames(sample.sample_id, spans, chunks, sr, warnings)
        values = np.full((len(spans), 4 * self.params.n_mels), np.nan, dtype=np.float32)
        n_short = 0
        for i, chunk in enumerate(chunks):
            if len(chunk) < self.params.hop_length * 2:
                n_short += 1
                continue
            db = self.log_mel(chunk)
            d = deltas(db, self.params.delta_width)
            values[i] = np.concatenate([db.mean(1), db.std(1, ddof=1), d.mean(1), d.std(1, ddof=1)])
        if n_short:
            warnings.append(f"{path}: {n_short} segment(s) shorter than two hops "
                            f"({2 * self.params.hop_length / sr:.3f} s); their features are NaN")
        frame = feature_frame(sample.sample_id, spans, values, self.feature_names)
        frame.attrs["warnings"] = warnings
        return frame

    def _frames(self, sample_id: str, spans, chunks, sr: int, warnings: list[str]) -> pd.DataFrame:
        """One row per log-Mel frame of each segment, timed by the frame's centre ± half a hop."""
        hop = self.params.hop_length / sr
        rows, values = [], []
        for (start, _end), chunk in zip(spans, chunks, strict=True):
            if len(chunk) < self.params.hop_length * 2:
                continue
            db = self.log_mel(chunk).T
            centres = start + np.arange(len(db)) * hop
            rows += [(round(c - hop / 2, 6), round(c + hop / 2, 6)) for c in centres]
            values.append(db)
        if not values:
            raise ExtractionError(f"sample {sample_id!r}: every segment is shorter than two hops "
                                  f"({2 * hop:.3f} s)")
        frame = feature_frame(sample_id, rows, np.concatenate(values), self.feature_names)
        frame.attrs["warnings"] = warnings
        return frame
