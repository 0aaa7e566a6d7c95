"""A synthetic corpus in the C-EXPR-DB layout whose compound expressions are planted as a
combination across modalities.

Each compound expression is a pair (facial component, vocal component): the face shows the
first (surprised: AU01, AU02, AU05, AU26; fearful: AU01, AU04, AU05, AU20; angry: AU04, AU07,
AU23), the voice carries the second (fearful, happy, sad, disgusted, angry prosody). The face
alone cannot tell the five "… surprised" classes apart, the voice alone cannot tell "sadly
surprised", "sadly fearful" and "sadly angry" apart; together they identify every class.

Layout (what the `c-expr-db` adapter reads):

    annotation/{video}.csv     Begin/End Time - hh:mm:ss.ms, one 0/1 column per compound
    audio/{video}.wav          16 kHz mono, the video's sound track
    face/{video}.csv           OpenFace 2.x per-frame output (30 fps, ", " separators)
    transcripts/{video}.csv    for a fraction of the videos (`transcripts`): what is said, timed
                               (Start_Time, End_Time, Text, as a speech recogniser writes it);
                               the words are drawn at random and carry no emotion

No video files are written (the face and audio files stand for what would be extracted from
them). Each video has its own speaker (voice and face baseline); segments are separated by
short silences.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.face import GAZE_ANGLES, GAZE_VECTORS, OPENFACE2_AU_C, OPENFACE2_AU_R, POSE
from fusion.datasets.c_expr_db import BEGIN, COMPOUND, END
from fusion.synthetic.demo_corpus import SR, Prosody, synth_phrase

FPS = 30
# compound → (facial component, vocal component), in the order of COMPOUND
COMPONENTS = {
    "Fearfully Surprised": ("surprised", "fearful"), "Happily Surprised": ("surprised", "happy"),
    "Sadly Surprised": ("surprised", "sad"), "Disgustedly Surprised": ("surprised", "disgusted"),
    "Angrily Surprised": ("surprised", "angry"), "Sadly Fearful": ("fearful", "sad"),
    "Sadly Angry": ("angry", "sad"),
}
FACE_AUS = {"surprised": {"AU01": 2.5, "AU02": 2.5, "AU05": 2.0, "AU26": 2.5},
            "fearful": {"AU01": 2.0, "AU04": 2.0, "AU05": 2.5, "AU20": 2.5},
            "angry": {"AU04": 3.0, "AU07": 2.5, "AU23": 2.5}}
# vocal component → (F0 factor, pitch range in semitones, syllables/s, level dB, breathiness)
VOICE = {"fearful": (1.3, 7.0, 5.6, -20.0, 0.20), "happy": (1.15, 8.0, 5.0, -18.0, 0.05),
         "sad": (0.85, 1.5, 3.0, -27.0, 0.15), "disgusted": (0.95, 3.0, 3.6, -21.0, 0.08),
         "angry": (1.05, 5.0, 5.4, -16.0, 0.02)}
WORDS = ["oh", "what", "really", "no", "way", "look", "at", "that", "i", "did", "not", "expect", "this",
         "come", "on"]


def clock(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _voice(component: str, base_f0: float, rng: np.random.Generator) -> Prosody:
    f0, rng_st, rate, level, breath = VOICE[component]
    return Prosody(f0=base_f0 * f0 * float(rng.uniform(0.95, 1.05)), range_st=rng_st * float(rng.uniform(0.8, 1.2)),
                   rate=rate * float(rng.uniform(0.9, 1.1)), level_db=level + float(rng.normal(0, 1.5)),
                   accent_db=3.0, pause_p=0.05, pause_s=0.2, jitter=0.006, shimmer=0.05, breath=breath)


def _segment_audio(length: float, prosody: Prosody, female: bool,
                   rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Speech filling about `length` seconds (phrases with short pauses), cut to length, and
    its phrases (start, end in seconds from the segment's start, words)."""
    out = np.zeros(int(length * SR))
    phrases = []
    pos = int(0.1 * SR)
    while pos < len(out) - SR // 4:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7))))
        piece = synth_phrase(text, replace(prosody, level_db=prosody.level_db + float(rng.normal(0, 1))), female, rng)
        end = min(len(out), pos + len(piece))
        out[pos:end] += piece[: end - pos]
        phrases.append((pos / SR, end / SR, text))
        pos = end + int(rng.uniform(0.15, 0.4) * SR)
    return out, phrases


def _face_frames(components: list[tuple[float, float, str | None]], duration: float,
                 rng: np.random.Generator) -> pd.DataFrame:
    """OpenFace 2.x columns for every frame; AU intensities follow each span's component."""
    n = int(duration * FPS)
    t = np.arange(n) / FPS
    base = {au: float(rng.uniform(0.0, 0.6)) for au in OPENFACE2_AU_R}
    cols: dict[str, np.ndarray] = {"frame": np.arange(1, n + 1), "face_id": np.zeros(n, int), "timestamp": t,
                                   "confidence": np.clip(rng.normal(0.93, 0.03, n), 0, 0.99),
                                   "success": np.ones(n, int)}
    levels = {au: np.full(n, base[au]) for au in OPENFACE2_AU_R}
    for start, end, comp in components:
        if comp is None:
            continue
        inside = (t >= start) & (t < end)
        ramp = np.clip(np.minimum(t - start, end - t) / 0.4, 0, 1)  # onset and offset over 0.4 s
        for au, peak in FACE_AUS[comp].items():
            levels[au] = np.where(inside, levels[au] + peak * float(rng.uniform(0.7, 1.2)) * ramp, levels[au])
    for au in OPENFACE2_AU_R:
        smooth = np.convolve(rng.normal(0, 0.25, n), np.ones(5) / 5, mode="same")
        cols[f"{au}_r"] = np.clip(levels[au] + smooth, 0, 5)
    for au in OPENFACE2_AU_C:
        r = cols.get(f"{au}_r")
        cols[f"{au}_c"] = (r >= 1.0).astype(int) if r is not None else (rng.random(n) < 0.05).astype(int)
    for c in GAZE_VECTORS:
        cols[c] = rng.normal(0, 0.1, n) + (-0.95 if c.endswith("_z") else 0.0)
    for c in GAZE_ANGLES:
        cols[c] = rng.normal(0, 0.08, n)
    for c, centre in zip(POSE, (0, 0, 500, 0, 0, 0), strict=True):
        cols[c] = centre + rng.normal(0, 5 if c.startswith("pose_T") else 0.05, n)
    order = ["frame", "face_id", "timestamp", "confidence", "success", *GAZE_VECTORS, *GAZE_ANGLES, *POSE,
             *[f"{a}_r" for a in OPENFACE2_AU_R], *[f"{a}_c" for a in OPENFACE2_AU_C]]
    return pd.DataFrame({c: cols[c] for c in order})


def generate_cexpr_corpus(root: str | Path, n_videos: int = 24, seed: int = 0,
                          segments: tuple[int, int] = (2, 4), seconds: tuple[float, float] = (3.0, 6.0),
                          transcripts: float = 0.5) -> Path:
    """Write the corpus under `root`; returns it. Classes are drawn evenly over all segments;
    the first `transcripts` fraction of the videos get a transcript."""
    import soundfile as sf

    root = Path(root)
    for sub in ("annotation", "audio", "face", "transcripts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = rng.integers(segments[0], segments[1] + 1, n_videos)
    labels = np.resize(np.arange(len(COMPOUND)), counts.sum())
    rng.shuffle(labels)
    k = 0
    for v in range(n_videos):
        video = f"video_{v:03d}"
        female = bool(rng.random() < 0.5)
        base_f0 = float(rng.normal(210, 20) if female else rng.normal(120, 12))
        t = float(rng.uniform(0.5, 1.5))
        spans, pieces, rows, said = [], [], [], []
        for _ in range(counts[v]):
            name = COMPOUND[labels[k]]
            k += 1
            length = float(rng.uniform(*seconds))
            face, voice = COMPONENTS[name]
            audio, phrases = _segment_audio(length, _voice(voice, base_f0, rng), female, rng)
            pieces.append((t, audio))
            said.extend((t + a, t + b, words) for a, b, words in phrases)
            spans.append((t, t + length, face))
            rows.append({BEGIN: clock(t), END: clock(t + length), **{c: int(c == name) for c in COMPOUND}})
            t += length + float(rng.uniform(0.5, 1.2))
        duration = t + 0.5
        audio = rng.normal(0, 10 ** (-60 / 20), int(duration * SR))
        for start, piece in pieces:
            a = int(start * SR)
            audio[a:a + len(piece)] += piece[: len(audio) - a]
        tmp = root / "audio" / f".{video}.tmp.wav"
        sf.write(tmp, np.clip(audio, -1, 1), SR, subtype="PCM_16")
        tmp.replace(root / "audio" / f"{video}.wav")
        frames = _face_frames(spans, duration, rng)
        tmp = root / "face" / f".{video}.tmp.csv"
        frames.to_csv(tmp, index=False, sep=",", float_format="%.4f")
        _respace(tmp)
        tmp.replace(root / "face" / f"{video}.csv")
        tmp = root / "annotation" / f".{video}.tmp.csv"
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(root / "annotation" / f"{video}.csv")
        if v < round(transcripts * n_videos):
            tmp = root / "transcripts" / f".{video}.tmp.csv"
            pd.DataFrame(said, columns=["Start_Time", "End_Time", "Text"]).round(3).to_csv(tmp, index=False)
            tmp.replace(root / "transcripts" / f"{video}.csv")
    return root


def _respace(path: Path) -> None:
    """OpenFace writes ", " between fields."""
    path.write_text(path.read_text(encoding="utf-8").replace(",", ", "), encoding="utf-8")

