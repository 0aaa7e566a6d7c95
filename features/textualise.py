"""Non-verbal cues written as text and embedded by a sentence encoder: the textualised modality
of Richet et al. (2024), "Textualized and Feature-based Models for Compound Multimodal Emotion
Recognition in the Wild".

For every segment (window, turn, or the whole sample) the face's action units and the voice's
prosody are measured with the project's own extractors (`face`, eGeMAPS functionals), turned
into a short description, and the description is embedded:

    face: strongly inner brow raiser, outer brow raiser, jaw drop; slightly upper lid raiser.
    voice: much higher pitch than usual, louder than usual, faster than usual.

Action units are described by their mean intensity in the segment (OpenFace / py-feat 0–5
scale): at least `strong` → "strongly", at least `present` → "slightly". The voice is described
against the speaker's own level over the whole recording (pitch in semitones, loudness,
pitch variability, voiced segments per second as the speaking rate), so that a high voice is
not called high. A sample without face features or audio is described without that part;
without either it is an error. `describe(sample, segments)` returns the texts themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import BatchResult, ExtractionError, Extractor, Params, Sample, Segment, feature_frame
from features.face import AU_NAMES
from features.registry import EXTRACTORS, build_extractor
from features.text import DEFAULT_MODEL, load_encoder, resolve_device

F0, F0_VAR = "F0semitoneFrom27.5Hz_sma3nz_amean", "F0semitoneFrom27.5Hz_sma3nz_stddevNorm"
LOUDNESS, RATE = "loudness_sma3_amean", "VoicedSegmentsPerSec"


class TextualiseParams(Params):
    face_layout: Literal["openface2", "daic", "pyfeat"] = "openface2"
    strong: float = Field(1.5, ge=0)
    present: float = Field(0.7, ge=0)
    model: str = DEFAULT_MODEL
    batch_size: int = Field(64, ge=1)
    device: str = "auto"


def _graded(ratio_or_diff: float, steps: tuple[float, float], words: tuple[str, str], low: bool) -> str | None:
    """'much <word>' / '<word>' beyond the thresholds (below them when `low`)."""
    small, big = steps
    value = -ratio_or_diff if low else ratio_or_diff
    if not np.isfinite(value) or value < small:
        return None
    return f"much {words[0]}" if value >= big else words[0]


def describe_face(row: pd.Series, strong: float, present: float) -> str:
    """'face: strongly …; slightly …' from one segment's mean AU intensities (`AUxx_r__mean`)."""
    levels = {au: row.get(f"{au}_r__mean", np.nan) for au in AU_NAMES}
    if all(not np.isfinite(v) for v in levels.values()):
        return "face: not visible."
    hi = [AU_NAMES[a] for a, v in levels.items() if np.isfinite(v) and v >= strong]
    mid = [AU_NAMES[a] for a, v in levels.items() if np.isfinite(v) and present <= v < strong]
    if not hi and not mid:
        return "face: relaxed, no clear expression."
    parts = ([f"strongly {', '.join(hi)}"] if hi else []) + ([f"slightly {', '.join(mid)}"] if mid else [])
    return f"face: {'; '.join(parts)}."


def describe_voice(row: pd.Series, ref: pd.Series) -> str:
    """'voice: …' from one segment's eGeMAPS functionals against the speaker's own (`ref`)."""
    if not np.isfinite(row.get(F0, np.nan)):
        return "voice: silent or unvoiced."

    def ratio(c):
        return row[c] / ref[c] if ref[c] and np.isfinite(ref[c]) else np.nan

    cues = [
        _graded(row[F0] - ref[F0], (1.5, 4.0), ("higher pitch than usual",), False)
        if row[F0] >= ref[F0] else _graded(row[F0] - ref[F0], (1.5, 4.0), ("lower pitch than usual",), True),
        "lively intonation" if ratio(F0_VAR) >= 1.3 else "flat intonation" if ratio(F0_VAR) <= 0.7 else None,
        "louder than usual" if ratio(LOUDNESS) >= 1.4 else "quieter than usual" if ratio(LOUDNESS) <= 0.7 else None,
        "faster than usual" if ratio(RATE) >= 1.25 else "slower than usual" if ratio(RATE) <= 0.8 else None,
    ]
    cues = [c for c in cues if c]
    return f"voice: {', '.join(cues)}." if cues else "voice: as usual for this speaker."


@functools.lru_cache(maxsize=8)
def _speaker_reference(path: str, mtime_ns: int) -> pd.Series:
    """eGeMAPS functionals of a whole recording (the speaker's own level), computed once per
    file and process: the segments of one video share it. `mtime_ns` keys a changed file anew."""
    smile = build_extractor("opensmile", {"feature_set": "eGeMAPSv02", "level": "functionals"})
    return smile.process_file(path).iloc[0]


def _by_start(frame: pd.DataFrame | None) -> dict[float, pd.Series]:
    """A frame's rows by their segment's start time (ends may be cut at the recording's end)."""
    if frame is None:
        return {}
    return {round(float(start), 3): frame.iloc[i] for i, (_, start, _end) in enumerate(frame.index)}


@EXTRACTORS.register("textualise")
class TextualiseExtractor(Extractor):
    """Descriptions of each segment's face and voice, embedded by a sentence encoder (`emb_###`).

    Args:
        face_layout: the face files' layout ("openface2", "daic", "pyfeat").
        strong, present: AU intensities described as "strongly" and "slightly" active.
        model: the sentence encoder (default: the bundled all-MiniLM-L6-v2).
        batch_size, device: encoding.
    """

    name = "textualise"
    modality = "text"
    media = ("face", "face_au", "audio")
    Params = TextualiseParams

    def _encoder(self):
        return load_encoder(self.params.model, resolve_device(self.params.device))

    def check(self) -> None:
        self._encoder()

    @property
    def feature_names(self) -> list[str]:
        enc = self._encoder()
        dim = getattr(enc, "get_embedding_dimension", enc.get_sentence_embedding_dimension)()
        return [f"emb_{i:03d}" for i in range(dim)]

    def library_versions(self) -> dict[str, str]:
        import opensmile
        import sentence_transformers

        return {"opensmile": opensmile.__version__, "sentence-transformers": sentence_transformers.__version__}

    def describe(self, sample: Sample,
                 segments: Sequence[Segment] | None) -> tuple[list[tuple[float, float]], list[str]]:
        """The spans and the description of each segment (or of the whole sample: its span in
        the recording when it has one)."""
        p = self.params
        files = self.source_files(sample)
        if segments is None and sample.span is not None:
            segments = [Segment(float(sample.span[0]), float(sample.span[1]))]
        face = voice = ref = None
        if "face" in files or "face_au" in files:
            face = build_extractor("face", {"layout": p.face_layout}).process_sample(sample, segments)
        if "audio" in files:
            smile = build_extractor("opensmile", {"feature_set": "eGeMAPSv02", "level": "functionals"})
            voice = smile.process_sample(sample, segments)
            ref = _speaker_reference(str(files["audio"]), files["audio"].stat().st_mtime_ns)
        if segments is not None:
            spans = [(float(seg.start), float(seg.end)) for seg in segments]
        else:
            spans = [(0.0, max(float(f.index[0][2]) for f in (face, voice) if f is not None))]
        faces, voices = _by_start(face), _by_start(voice)
        texts = []
        for start, _ in spans:
            words = []
            if face is not None:
                row = faces.get(round(start, 3))
                words.append("face: not visible." if row is None else describe_face(row, p.strong, p.present))
            if voice is not None:
                row = voices.get(round(start, 3))
                words.append("voice: silent or unvoiced." if row is None else describe_voice(row, ref))
            texts.append(" ".join(words))
        return spans, texts

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        return self.sample_from_batch(sample, segments)

    def process_samples(self, items) -> BatchResult:
        """Describe every segment of every sample, then embed all descriptions in one pass."""
        result = BatchResult(None, {}, {})
        plans, texts = [], []
        for sample, segments in items:
            try:
                spans, descr = self.describe(sample, segments)
                if not spans:
                    raise ExtractionError(f"sample {sample.sample_id!r}: no segment to describe")
                plans.append((sample.sample_id, spans, len(texts)))
                texts.extend(descr)
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                result.errors[sample.sample_id] = err
        if not plans:
            return result
        emb = np.asarray(self._encoder().encode(texts, batch_size=self.params.batch_size, convert_to_numpy=True,
                                                normalize_embeddings=True, show_progress_bar=False), dtype=np.float32)
        names = pd.Index(self.feature_names)
        frames = [feature_frame(sid, spans, emb[start:start + len(spans)], names) for sid, spans, start in plans]
        result.frame = pd.concat(frames) if len(frames) > 1 else frames[0]
        for sid, *_ in plans:
            result.warnings.setdefault(sid, [])
        return result
