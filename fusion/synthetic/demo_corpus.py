"""A synthetic interview corpus in the exact DAIC-WOZ layout, for the demo and for tests.

Each session has a latent depression severity `d` (→ PHQ-8 score and items) and a PTSD
severity correlated with it (→ `PTSD Severity`, a PCL-C-like 17–85 score, and the binary
`PCL-C (PTSD)`). Each modality sees the latents through its own noise, so no single
modality carries all of the signal:

- prosody: synthesised voiced speech (a glottal-like source through vowel formants) whose
  pitch range, loudness, speaking rate, pauses, jitter, shimmer and breathiness follow the
  acoustic view of `d` (and, weakly, of PTSD);
- transcript wording: how often answers use negative, trauma-related or positive phrases;
- face (OpenFace 1.x columns as in DAIC): smile rate, brow-lowerer and lip-corner-depressor
  levels, gaze direction and head pitch, plus tracking failures.

In some depressed sessions ("masked") the voice sounds healthy except in the turns whose
words are negative, which are spoken with flat, calm prosody: an acoustic–textual
inconsistency that only a model looking at both can use. `demo_latents.csv` (not part of
the DAIC layout) records the latents for analysis.

The interviewer ("Ellie") reacts to each answer as in DAIC-WOZ, where her follow-ups depend on
what was said: after negative or trauma-related words she mostly answers with empathy ("that
sounds really hard"), after positive ones with encouragement, otherwise with a short
acknowledgement or nothing. Her turns therefore carry the participant's state second-hand,
the shortcut Burdisso et al. (2024) found in DAIC-WOZ; models read the participant's turns
by default. Her reactions are drawn from a random stream of their own, so the participant's
words and voice do not depend on them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal as sps
from scipy import stats

from features.runner import worker_pool
from fusion.datasets.daic_woz import KNOWN_EXCLUDED, KNOWN_NOTES, PHQ8_ITEMS, SPLIT_FILES

SR = 16_000
FPS = 30
# Ids the real release leaves out or flags: the synthetic corpus skips them, so that the DAIC
# adapter's notes about them never describe a synthetic session.
EXCLUDED_IDS = KNOWN_EXCLUDED | set(KNOWN_NOTES)

AU_R = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU09_r", "AU10_r", "AU12_r",
        "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU25_r", "AU26_r"]
AU_C = ["AU04_c", "AU12_c", "AU15_c", "AU23_c", "AU28_c", "AU45_c"]
GAZE = ["x_0", "y_0", "z_0", "x_1", "y_1", "z_1", "x_h0", "y_h0", "z_h0", "x_h1", "y_h1", "z_h1"]
POSE = ["X", "Y", "Z", "Rx", "Ry", "Rz"]
FRAME_COLS = ["frame", "timestamp", "confidence", "success"]

QUESTIONS = [
    ("how are you doing today", "mood"),
    ("where are you from originally", "origin"),
    ("what do you do to relax", "relax"),
    ("how have you been feeling lately", "mood"),
    ("when was the last time you felt really happy", "happy"),
    ("how easy is it for you to get a good night's sleep", "sleep"),
    ("what are you most proud of in your life", "proud"),
    ("how close are you to your family", "family"),
    ("what's one of your most memorable experiences", "memory"),
    ("have you ever been diagnosed with p_t_s_d", "diagnosis"),
    ("tell me about a situation that you wish you had handled differently", "regret"),
    ("what do you enjoy about your job", "work"),
    ("how do you cope when things get hard", "cope"),
    ("what would your best friend say about you", "friend"),
]
NEUTRAL = {
    "mood": ["i'm okay i guess", "i'm doing alright", "pretty normal day"],
    "origin": ["i'm from los angeles", "i grew up in ohio", "originally from texas"],
    "relax": ["i watch tv mostly", "i go for walks sometimes", "i read a little"],
    "happy": ["i don't remember exactly", "maybe last month", "a while ago i guess"],
    "sleep": ["it depends on the night", "i sleep about six hours", "it varies"],
    "proud": ["finishing school i guess", "my job maybe", "i'm not sure"],
    "family": ["we talk sometimes", "my mom lives nearby", "we're fairly close"],
    "memory": ["a trip to new york", "my graduation", "moving out here"],
    "diagnosis": ["no i haven't", "no never", "not that i know of"],
    "regret": ["an argument with my brother", "a job interview", "i don't know really"],
    "work": ["it pays the bills", "the people are fine", "i work in an office"],
    "cope": ["i just keep going", "i talk to my sister", "i try to stay busy"],
    "friend": ["that i'm quiet", "that i'm reliable", "that i'm funny sometimes"],
}
NEGATIVE = [
    "i've been feeling really down lately", "i don't really enjoy anything anymore",
    "i can't sleep most nights", "i feel tired all the time", "honestly i feel like a failure",
    "it's hard to concentrate on anything", "i mostly stay home by myself",
    "nothing really seems worth it", "i feel hopeless about the future",
    "i've lost interest in things i used to love", "i feel empty most days",
    "i just feel sad and i don't know why", "i can barely get out of bed",
    "i've been crying a lot", "i feel worthless", "everything feels like too much",
]
TRAUMA = [
    "i keep having nightmares about it", "loud noises make me jump",
    "i avoid driving since the accident", "i can't stop thinking about what happened",
    "i feel on edge all the time", "i get flashbacks when i'm stressed",
    "yes i was diagnosed after my deployment", "i don't like crowds since then",
    "i'm always watching the door", "i get angry really fast now",
]
POSITIVE = [
    "i'm doing pretty well", "i love spending time with my family",
    "i feel good about where i am", "i sleep fine usually", "i'm really proud of my kids",
    "i enjoy hiking on weekends", "things are going great at work",
    "i had a wonderful time last week", "i'm excited about the future",
    "my friends make me laugh a lot", "i feel pretty happy these days",
]
FILLERS = ["um", "uh", "you know", "well", "like"]
ELLIE_ACKS = ["okay", "i see", "mhm", "right", "uh huh"]
ELLIE_EMPATHY = ["that sounds really hard", "i'm sorry to hear that", "that must be difficult",
                 "i'm sorry that you're going through that", "that sounds like a lot to deal with"]
ELLIE_PRAISE = ["that's great", "that's so good to hear", "nice", "awesome", "that sounds really nice"]
# P(Ellie reacts) and what she says, by the strongest content of the answer
ELLIE_REACTIONS = {"negative": (0.85, ELLIE_EMPATHY), "trauma": (0.85, ELLIE_EMPATHY),
                   "positive": (0.7, ELLIE_PRAISE), "neutral": (0.5, ELLIE_ACKS)}


def ellie_reaction(kinds: list[str], rng: np.random.Generator) -> str | None:
    """The interviewer's reaction to an answer made of phrases of these kinds, or None."""
    kind = next((k for k in ("negative", "trauma", "positive") if k in kinds), "neutral")
    p, lines = ELLIE_REACTIONS[kind]
    return str(rng.choice(lines)) if rng.random() < p else None
VOWELS = np.array([(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
                   (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240)], dtype=float)


@dataclass
class Latents:
    pid: int
    gender: int
    d: float
    phq8: int
    ptsd_u: float
    ptsd_severity: int
    acoustic_d: float
    acoustic_t: float
    text_d: float
    text_t: float
    face_d: float
    face_t: float
    masked: bool


def _ptsd_score(u: float) -> int:
    """Map a uniform latent to a PCL-C-like 17–85 score with ~30/40/30 % in ≤20 / 21–40 / >40."""
    if u < 0.3:
        return int(17 + math.floor(u / 0.3 * 4))
    if u < 0.7:
        return int(21 + math.floor((u - 0.3) / 0.4 * 20))
    return int(min(85, 41 + math.floor((u - 0.7) / 0.3 * 45)))


def draw_latents(pid: int, rng: np.random.Generator) -> Latents:
    d = float(rng.beta(1.3, 2.4))
    phq8 = int(np.clip(round(24 * d + rng.normal(0, 1.0)), 0, 24))
    z_d = stats.norm.ppf(np.clip(stats.beta.cdf(d, 1.3, 2.4), 1e-6, 1 - 1e-6))
    z_t = 0.6 * z_d + 0.8 * rng.normal()
    u = float(stats.norm.cdf(z_t))
    view = lambda x, s: float(np.clip(x + rng.normal(0, s), -0.3, 1.3))  # noqa: E731
    masked = phq8 >= 10 and rng.random() < 0.35
    acoustic_d = float(rng.uniform(0.0, 0.3)) if masked else view(d, 0.22)
    # The face is measured on thousands of frames, so its view reaches the features almost
    # noise-free; its view noise is larger to keep the modalities comparably informative.
    return Latents(
        pid=pid, gender=int(rng.random() < 0.5), d=d, phq8=phq8, ptsd_u=u,
        ptsd_severity=_ptsd_score(u), acoustic_d=acoustic_d, acoustic_t=view(u, 0.35),
        text_d=view(d, 0.22), text_t=view(u, 0.25), face_d=view(d, 0.32), face_t=view(u, 0.3),
        masked=masked,
    )


def phq8_items(score: int, rng: np.random.Generator) -> list[int]:
    """Eight 0–3 item scores summing to `score`."""
    items = [0] * 8
    weights = rng.dirichlet(np.full(8, 2.0))
    for _ in range(score):
        free = np.array([i < 3 for i in items], dtype=float) * weights
        items[int(rng.choice(8, p=free / free.sum()))] += 1
    return items


# --- transcript ---------------------------------------------------------------------------

def answer_phrases(topic: str, lat: Latents, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Phrases of one answer, each tagged neutral / negative / trauma / positive."""
    n = 1 + int(rng.poisson(max(0.3, 1.4 - 0.8 * lat.text_d)))
    out = []
    for _ in range(n):
        r = rng.random()
        p_neg = np.clip(0.06 + 0.6 * lat.text_d, 0, 0.8)
        p_trauma = np.clip(0.02 + 0.35 * lat.text_t, 0, 0.5)
        p_pos = np.clip(0.45 * (1 - lat.text_d), 0, 0.6)
        if r < p_neg:
            kind, text = "negative", str(rng.choice(NEGATIVE))
        elif r < p_neg + p_trauma:
            kind, text = "trauma", str(rng.choice(TRAUMA))
        elif r < p_neg + p_trauma + p_pos:
            kind, text = "positive", str(rng.choice(POSITIVE))
        else:
            kind, text = "neutral", str(rng.choice(NEUTRAL[topic]))
        if rng.random() < 0.25:
            text = f"{rng.choice(FILLERS)} {text}"
        if kind == "positive" and rng.random() < 0.2:
            text = f"{text} <laughter>"
        out.append((kind, text))
    return out


def syllables(word: str) -> int:
    groups = 0
    prev = False
    for ch in word:
        v = ch in "aeiouy"
        groups += v and not prev
        prev = v
    return max(1, groups)


# --- speech synthesis ---------------------------------------------------------------------

@dataclass
class Prosody:
    f0: float          # speaker's base F0 (Hz)
    range_st: float    # pitch excursion (semitones)
    rate: float        # syllables per second
    level_db: float    # loudness (dBFS RMS of voiced parts)
    accent_db: float   # loudness variation between syllables
    pause_p: float     # probability of a pause between words
    pause_s: float     # typical pause length (s)
    jitter: float
    shimmer: float
    breath: float      # aspiration noise relative to the voiced source


def session_prosody(lat: Latents, rng: np.random.Generator) -> Prosody:
    a, t = float(np.clip(lat.acoustic_d, 0, 1)), float(np.clip(lat.acoustic_t, 0, 1))
    base = rng.normal(118, 12) if lat.gender == 1 else rng.normal(205, 18)
    return Prosody(
        f0=float(base * (1 + 0.05 * t)),
        range_st=float(np.clip(5.5 - 3.8 * a + rng.normal(0, 0.6), 0.6, 9)),
        rate=float(np.clip(4.7 - 1.9 * a + 0.3 * t + rng.normal(0, 0.3), 2.0, 6.5)),
        level_db=float(-19 - 6 * a + rng.normal(0, 2.0)),
        accent_db=float(np.clip(6 - 4 * a + rng.normal(0, 0.8), 0.5, 9)),
        pause_p=float(np.clip(0.06 + 0.3 * a + rng.normal(0, 0.03), 0, 0.6)),
        pause_s=float(0.2 + 0.5 * a),
        jitter=float(0.004 + 0.012 * a),
        shimmer=float(0.04 + 0.08 * a),
        breath=float(np.clip(0.04 + 0.22 * a + rng.normal(0, 0.03), 0.01, 0.5)),
    )


def turn_prosody(p: Prosody, kind: str, lat: Latents, rng: np.random.Generator) -> Prosody:
    """Per-turn variation; negative words are flat and calm in masked (and depressed) sessions."""
    jit = lambda: float(rng.uniform(0.85, 1.15))  # noqa: E731
    q = Prosody(p.f0 * float(rng.uniform(0.97, 1.03)), p.range_st * jit(), p.rate * jit(),
                p.level_db + float(rng.normal(0, 1.0)), p.accent_db * jit(), p.pause_p,
                p.pause_s, p.jitter, p.shimmer, p.breath)
    if kind == "negative":
        if lat.masked:
            q.range_st, q.accent_db, q.rate = 0.7, 1.0, q.rate * 0.8
            q.level_db -= 5
            q.pause_p = min(0.6, q.pause_p + 0.2)
        elif lat.phq8 < 10:
            q.range_st *= 1.3
            q.accent_db *= 1.2
    return q


def _resonator(f: float, bw: float) -> tuple[np.ndarray, np.ndarray]:
    r = math.exp(-math.pi * bw / SR)
    theta = 2 * math.pi * f / SR
    a = np.array([1.0, -2 * r * math.cos(theta), r * r])
    return np.array([a.sum()]), a  # unit gain at DC


def synth_phrase(text: str, p: Prosody, female: bool, rng: np.random.Generator) -> np.ndarray:
    """Voiced speech for `text`: one syllable per vowel group, pauses between some words."""
    words = [w for w in text.replace("<laughter>", "").split() if w]
    plan: list[tuple[str, float, float]] = []  # (kind, duration, accent)
    for wi, word in enumerate(words):
        n = syllables(word)
        stressed = int(rng.integers(n))
        for s in range(n):
            dur = float(np.clip(rng.gamma(6.0, 1.0 / (6.0 * p.rate)), 0.07, 0.45))
            if rng.random() < 0.55:
                plan.append(("c", min(0.09, 0.35 * dur), 0.0))
            plan.append(("v", dur, 1.0 if s == stressed else 0.0))
        if wi < len(words) - 1 and rng.random() < p.pause_p:
            plan.append(("p", float(p.pause_s * rng.uniform(0.5, 1.6)), 0.0))
    n_total = int(sum(d for _, d, _ in plan) * SR) + SR // 10
    out = np.zeros(n_total, dtype=np.float64)
    voiced_dur = sum(d for k, d, _ in plan if k == "v")
    # Intonation: declination over the phrase plus an accent on stressed syllables.
    t_v = 0.0
    pos = 0
    phase = float(rng.uniform(0, 2 * math.pi))
    formant_scale = 1.15 if female else 1.0
    level = 10 ** (p.level_db / 20)
    for kind, dur, accent in plan:
        n = int(dur * SR)
        if n <= 0:
            continue
        if kind == "p":
            pos += n
            continue
        if kind == "c":
            noise = rng.normal(0, 1, n)
            noise = np.diff(noise, prepend=0.0)  # fricative-like: high-pass
            env = np.hanning(n)
            out[pos:pos + n] += 0.25 * level * env * noise
            pos += n
            continue
        frac = (t_v + np.arange(n) / SR) / max(voiced_dur, 1e-3)
        st = p.range_st * (0.5 - frac) * 0.8 + accent * p.range_st * 0.6 * np.sin(np.pi * np.arange(n) / n)
        jitter = 1 + p.jitter * rng.normal(0, 1, n // 80 + 2).repeat(80)[:n]
        f0 = p.f0 * 2 ** (st / 12) * jitter
        ph = phase + 2 * np.pi * np.cumsum(f0) / SR
        phase = float(ph[-1])
        source = 2 * ((ph / (2 * np.pi)) % 1.0) - 1  # sawtooth: all harmonics, 1/k roll-off
        source = sps.lfilter([1.0], [1.0, -0.7], source)  # extra spectral tilt
        source += p.breath * 3 * rng.normal(0, 1, n)
        vowel = VOWELS[int(rng.integers(len(VOWELS)))] * formant_scale
        y = source
        for f, bw in zip(vowel, (90, 110, 160), strict=True):
            b, a = _resonator(f, bw)
            y = sps.lfilter(b, a, y)
        y /= np.sqrt(np.mean(y ** 2)) + 1e-12
        gain_db = accent * p.accent_db + rng.normal(0, p.accent_db / 4)
        amp = level * 10 ** (gain_db / 20) * (1 + p.shimmer * rng.normal(0, 1, n // 120 + 2).repeat(120)[:n])
        attack = min(n // 3, int(0.03 * SR))
        env = np.ones(n)
        env[:attack] = np.linspace(0, 1, attack)
        env[n - attack:] = np.linspace(1, 0, attack)
        out[pos:pos + n] += y * amp * env
        pos += n
        t_v += dur
    return out[:pos + SR // 20]


# --- face ---------------------------------------------------------------------------------

def _ar1(rng: np.random.Generator, n: int, rho: float, sd: float) -> np.ndarray:
    e = rng.normal(0, sd * math.sqrt(1 - rho ** 2), n)
    return sps.lfilter([1.0], [1.0, -rho], e)


def _events(rng: np.random.Generator, n: int, per_min: float, dur_s: tuple[float, float],
            amp: tuple[float, float]) -> np.ndarray:
    out = np.zeros(n)
    k = rng.poisson(per_min * n / FPS / 60)
    for _ in range(k):
        length = int(rng.uniform(*dur_s) * FPS)
        start = int(rng.integers(max(1, n - length)))
        out[start:start + length] += rng.uniform(*amp) * np.hanning(length)[: n - start]
    return out


def face_tracks(lat: Latents, duration: float, speaking: np.ndarray,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame AU, gaze and pose values (OpenFace semantics) for one session."""
    n = len(speaking)
    fd, ft = float(np.clip(lat.face_d, 0, 1)), float(np.clip(lat.face_t, 0, 1))
    au: dict[str, np.ndarray] = {}
    base = {
        "AU01_r": 0.3 + 0.4 * ft, "AU02_r": 0.25 + 0.3 * ft, "AU04_r": 0.25 + 0.9 * fd + 0.4 * ft,
        "AU05_r": 0.2 + 0.3 * ft, "AU06_r": 0.2, "AU09_r": 0.1, "AU10_r": 0.3, "AU12_r": 0.25,
        "AU14_r": 0.3 + 0.3 * fd, "AU15_r": 0.15 + 0.8 * fd, "AU17_r": 0.4 + 0.4 * fd,
        "AU20_r": 0.15 + 0.4 * ft, "AU25_r": 0.3, "AU26_r": 0.3,
    }
    expressivity = 1.0 - 0.45 * fd
    smiles = _events(rng, n, per_min=max(0.3, 5.5 * (1 - fd) + rng.normal(0, 0.8)),
                     dur_s=(1.0, 3.0), amp=(1.0, 3.0))
    for name, mu in base.items():
        au[name] = mu + _ar1(rng, n, 0.97, 0.25 * expressivity)
    au["AU12_r"] += smiles
    au["AU06_r"] += 0.7 * smiles
    au["AU25_r"] += 1.2 * speaking + _ar1(rng, n, 0.6, 0.3) * speaking
    au["AU26_r"] += 0.9 * speaking + _ar1(rng, n, 0.6, 0.3) * speaking
    for name in AU_R:
        au[name] = np.clip(au[name], 0, 5)
    blinks = _events(rng, n, per_min=14 + 6 * ft, dur_s=(0.1, 0.25), amp=(1, 1))
    occ = {
        "AU04_c": (au["AU04_r"] > 1.0).astype(float), "AU12_c": (au["AU12_r"] > 1.0).astype(float),
        "AU15_c": (au["AU15_r"] > 0.9).astype(float),
        "AU23_c": (_ar1(rng, n, 0.95, 1.0) > 1.2 - 0.4 * ft).astype(float),
        "AU28_c": (_ar1(rng, n, 0.95, 1.0) > 1.8).astype(float),
        "AU45_c": (blinks > 0.3).astype(float),
    }
    down = 0.12 + 0.16 * fd
    yaw_sd = 0.05 + 0.08 * ft
    theta_y = down + _ar1(rng, n, 0.98, 0.05)
    theta_x = rng.normal(0, 0.03) + _ar1(rng, n, 0.95, yaw_sd)
    gaze = {}
    for eye, dx in ((0, 0.03), (1, -0.03)):
        v = np.stack([np.sin(theta_x + dx), np.sin(theta_y), -np.cos(theta_x) * np.cos(theta_y)], 1)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        gaze[f"x_{eye}"], gaze[f"y_{eye}"], gaze[f"z_{eye}"] = v.T
        vh = v + np.array([0.02, -0.05, 0.0])
        vh /= np.linalg.norm(vh, axis=1, keepdims=True)
        gaze[f"x_h{eye}"], gaze[f"y_h{eye}"], gaze[f"z_h{eye}"] = vh.T
    move = 1.0 + 1.2 * ft
    pose = {
        "X": 15 + rng.normal(0, 10) + _ar1(rng, n, 0.995, 8 * move),
        "Y": 25 + rng.normal(0, 10) + _ar1(rng, n, 0.995, 6 * move),
        "Z": 560 + rng.normal(0, 40) + _ar1(rng, n, 0.995, 15 * move),
        "Rx": 0.05 + 0.14 * fd + _ar1(rng, n, 0.98, 0.04 * move),
        "Ry": rng.normal(0, 0.05) + _ar1(rng, n, 0.98, 0.05 * move),
        "Rz": rng.normal(0, 0.03) + _ar1(rng, n, 0.98, 0.03 * move),
    }
    return {**au, **occ, **gaze, **pose}


def tracking_quality(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and success per frame, with a few tracking-loss episodes."""
    conf = np.clip(0.93 + _ar1(rng, n, 0.9, 0.03), 0.5, 0.99)
    success = np.ones(n, dtype=int)
    for _ in range(int(rng.poisson(2))):
        length = int(rng.uniform(0.3, 3.0) * FPS)
        start = int(rng.integers(max(1, n - length)))
        success[start:start + length] = 0
    conf[success == 0] = rng.uniform(0.0, 0.3, int((success == 0).sum()))
    return conf, success


def write_openface_txt(path: Path, columns: list[str], tracks: dict[str, np.ndarray],
                       conf: np.ndarray, success: np.ndarray) -> None:
    """An OpenFace 1.x / DAIC CLNF text file: `", "` separators, zeros where tracking failed."""
    n = len(conf)
    data = np.column_stack([np.arange(1, n + 1), np.arange(n) / FPS, conf, success]
                           + [np.where(success == 1, tracks[c], 0.0) for c in columns])
    fmt = ["%d", "%.6g", "%.6g", "%d"] + ["%.6g"] * len(columns)
    tmp = path.with_suffix(".tmp")
    np.savetxt(tmp, data, fmt=fmt, delimiter=", ", header=", ".join(FRAME_COLS + columns), comments="")
    tmp.replace(path)


# --- sessions -----------------------------------------------------------------------------

LIMIT_KNEE, LIMIT_CEILING = 0.9, 0.98


def limit(x: np.ndarray) -> np.ndarray:
    """A recording chain's limiter: samples below `LIMIT_KNEE` pass unchanged, louder peaks are
    compressed smoothly under `LIMIT_CEILING`, so that no recording reaches full scale (a
    hard clip would make the extractors warn, rightly, that the recording is clipped)."""
    a = np.abs(x)
    over = a > LIMIT_KNEE
    room = LIMIT_CEILING - LIMIT_KNEE
    out = x.copy()
    out[over] = np.sign(x[over]) * (LIMIT_KNEE + room * np.tanh((a[over] - LIMIT_KNEE) / room))
    return out


def generate_session(folder: Path, lat: Latents, n_questions: int, rng: np.random.Generator,
                     ellie_rng: np.random.Generator) -> None:
    """Write one `{pid}_P/` folder: transcript, audio and the three CLNF files (`ellie_rng`
    draws the interviewer's reactions)."""
    import soundfile as sf

    pid = lat.pid
    folder.mkdir(parents=True, exist_ok=True)
    prosody = session_prosody(lat, rng)
    rows: list[tuple[float, float, str, str]] = []
    pieces: list[tuple[float, np.ndarray]] = []
    t = float(rng.uniform(0.5, 1.5))

    def ellie(text: str) -> None:
        nonlocal t
        dur = len(text.split()) / 2.8 + 0.3
        rows.append((t, t + dur, "Ellie", text))
        t += dur

    ellie("hi i'm ellie thanks for coming in today")
    t += 0.4
    order = rng.permutation(len(QUESTIONS))[:n_questions]
    for qi in order:
        question, topic = QUESTIONS[int(qi)]
        ellie(question.replace("_", " "))
        t += 0.4 + float(rng.gamma(2.0, 0.2 + 0.6 * max(0.0, prosody.pause_s - 0.2)))
        phrases = answer_phrases(topic, lat, rng)
        for kind, text in phrases:
            audio = synth_phrase(text, turn_prosody(prosody, kind, lat, rng), lat.gender == 0, rng)
            dur = len(audio) / SR
            rows.append((t, t + dur, "Participant", text))
            pieces.append((t, audio))
            t += dur + float(rng.uniform(0.3, 0.9))
        t += float(rng.uniform(0.2, 0.6))
        reaction = ellie_reaction([k for k, _ in phrases], ellie_rng)
        if reaction is not None:
            ellie(reaction)
            t += 0.3
    ellie("okay i think i have asked everything i need to thanks for sharing your thoughts with me")
    duration = t + 1.0

    n = int(duration * SR)
    audio = rng.normal(0, 10 ** (-62 / 20), n)  # microphone noise floor
    speaking = np.zeros(int(duration * FPS) + 1)
    for start, piece in pieces:
        a = int(start * SR)
        audio[a:a + len(piece)] += piece[: n - a]
        speaking[int(start * FPS):int((start + len(piece) / SR) * FPS)] = 1.0
    audio = limit(audio)
    tmp = folder / f".{pid}_AUDIO.tmp.wav"
    sf.write(tmp, audio, SR, subtype="PCM_16")
    tmp.replace(folder / f"{pid}_AUDIO.wav")

    transcript = pd.DataFrame(rows, columns=["start_time", "stop_time", "speaker", "value"])
    transcript["start_time"] = transcript["start_time"].round(3)
    transcript["stop_time"] = transcript["stop_time"].round(3)
    tmp = folder / f".{pid}_TRANSCRIPT.tmp"
    transcript.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
    tmp.replace(folder / f"{pid}_TRANSCRIPT.csv")

    tracks = face_tracks(lat, duration, speaking, rng)
    conf, success = tracking_quality(rng, len(speaking))
    write_openface_txt(folder / f"{pid}_CLNF_AUs.txt", AU_R + AU_C, tracks, conf, success)
    write_openface_txt(folder / f"{pid}_CLNF_gaze.txt", GAZE, tracks, conf, success)
    write_openface_txt(folder / f"{pid}_CLNF_pose.txt", POSE, tracks, conf, success)


def participant_ids(n: int) -> list[int]:
    ids, pid = [], 300
    while len(ids) < n:
        if pid not in EXCLUDED_IDS:
            ids.append(pid)
        pid += 1
    return ids


def _make_session(root: Path, pid: int, seed_seq: np.random.SeedSequence, n_questions: int) -> dict:
    rng = np.random.default_rng(seed_seq)
    interviewer = np.random.default_rng(seed_seq.spawn(1)[0])
    lat = draw_latents(pid, rng)
    items = phq8_items(lat.phq8, rng)
    generate_session(root / f"{pid}_P", lat, n_questions, rng, interviewer)
    return {"lat": lat, "items": items}


GENERATOR_VERSION = 4  # 4: peaks limited below full scale instead of clipped
MANIFEST = "demo_corpus.json"


def generate_demo_corpus(root: str | Path, n_sessions: int = 60, seed: int = 0,
                         questions: int = 10, dev_fraction: float = 0.3, n_jobs: int = 1,
                         reuse: bool = True) -> tuple[Path, bool]:
    """Write a deterministic synthetic corpus in DAIC-WOZ layout under `root`.

    Session i depends only on (seed, i), so a larger corpus extends a smaller one.

    Args:
        reuse: skip generation when `root` already holds a complete corpus made with the
            same parameters by this generator version.

    Returns:
        The corpus root, and whether an existing corpus was reused.
    """
    root = Path(root)
    ids = participant_ids(n_sessions)
    manifest = {"generator_version": GENERATOR_VERSION, "n_sessions": n_sessions, "seed": seed,
                "questions": questions, "dev_fraction": dev_fraction}
    if reuse and _is_complete(root, manifest, ids):
        return root, True
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    seqs = np.random.SeedSequence(seed).spawn(n_sessions)
    q = min(questions, len(QUESTIONS))
    args = ([root] * len(ids), ids, seqs, [q] * len(ids))
    if n_jobs == 1:
        results = list(map(_make_session, *args))
    else:
        with worker_pool(n_jobs) as pool:
            results = list(pool.map(_make_session, *args))
    records, latents = [], []
    for res in results:
        lat, items = res["lat"], res["items"]
        records.append({"Participant_ID": lat.pid, "PHQ8_Binary": int(lat.phq8 >= 10),
                        "PHQ8_Score": lat.phq8, "Gender": lat.gender,
                        **dict(zip(PHQ8_ITEMS, items, strict=True)),
                        "PTSD Severity": lat.ptsd_severity,
                        "PCL-C (PTSD)": int(lat.ptsd_severity >= 44)})
        latents.append(vars(lat))
    labels = pd.DataFrame(records)
    split_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    is_dev = np.zeros(len(labels), dtype=bool)
    is_dev[split_rng.permutation(len(labels))[: int(round(dev_fraction * len(labels)))]] = True
    for split, mask in (("train", ~is_dev), ("dev", is_dev)):
        path = root / SPLIT_FILES[split]
        tmp = path.with_suffix(".tmp")
        labels[mask].sort_values("Participant_ID").to_csv(tmp, index=False)
        tmp.replace(path)
    pd.DataFrame(latents).to_csv(root / "demo_latents.csv", index=False)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root, False


def _is_complete(root: Path, manifest: dict, ids: list[int]) -> bool:
    path = root / MANIFEST
    if not path.exists():
        return False
    try:
        if json.loads(path.read_text(encoding="utf-8")) != manifest:
            return False
    except json.JSONDecodeError:
        return False
    names = ("AUDIO.wav", "TRANSCRIPT.csv", "CLNF_AUs.txt", "CLNF_gaze.txt", "CLNF_pose.txt")
    return all((root / f).exists() for f in SPLIT_FILES.values() if "test" not in f) and all(
        (root / f"{pid}_P" / f"{pid}_{n}").exists() for pid in ids for n in names)
