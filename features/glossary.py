"""Feature names in plain language for reports: eGeMAPS / ComParE functionals, log-Mel
statistics, facial action units, gaze and head pose, sentence-embedding dimensions and
emotion-recogniser posteriors, each with the statistic taken over the session or its turns.

`describe(column)` maps a model column (`<feature set>/<name>[__<statistic>]…`) to a short
label and a sentence; a name it does not know keeps its technical form (never a guess).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from features.face import AU_NAMES

# eGeMAPS low-level descriptors (Eyben et al., 2016), by the openSMILE name's stem.
LLD = {
    "F0semitoneFrom27.5Hz": "pitch (F0, semitones)",
    "loudness": "loudness",
    "spectralFlux": "spectral flux (how fast the sound spectrum changes)",
    "jitterLocal": "jitter (cycle-to-cycle pitch irregularity)",
    "shimmerLocaldB": "shimmer (cycle-to-cycle loudness irregularity)",
    "HNRdBACF": "harmonics-to-noise ratio (voice clarity)",
    "logRelF0-H1-H2": "H1-H2 harmonic difference (breathiness)",
    "logRelF0-H1-A3": "H1-A3 harmonic difference (spectral tilt)",
    "alphaRatio": "alpha ratio (energy above vs below 1 kHz)",
    "hammarbergIndex": "Hammarberg index (vocal effort)",
    "slope0-500": "spectral slope 0-500 Hz",
    "slope500-1500": "spectral slope 500-1500 Hz",
    "equivalentSoundLevel_dBp": "overall sound level",
    "loudnessPeaksPerSec": "loudness peaks per second (a speech-rate cue)",
    "VoicedSegmentsPerSec": "voiced segments per second (a speech-rate cue)",
    "MeanVoicedSegmentLengthSec": "mean length of voiced stretches",
    "StddevVoicedSegmentLengthSec": "variability of voiced-stretch length",
    "MeanUnvoicedSegmentLength": "mean length of pauses and unvoiced stretches",
    "StddevUnvoicedSegmentLength": "variability of pause length",
}
FORMANT = re.compile(r"^F([123])(frequency|bandwidth|amplitudeLogRelF0)$")
MFCC = re.compile(r"^mfcc(\d+)$")
FUNCTIONAL = {
    "amean": "mean", "stddevNorm": "variability (coefficient of variation)", "percentile20.0": "20th percentile",
    "percentile50.0": "median", "percentile80.0": "80th percentile", "pctlrange0-2": "range (20th-80th percentile)",
    "meanRisingSlope": "mean rising slope", "stddevRisingSlope": "variability of rising slopes",
    "meanFallingSlope": "mean falling slope", "stddevFallingSlope": "variability of falling slopes",
}
# Statistics that pooling and the face / log-Mel extractors append.
STAT = {"mean": "mean", "std": "variability (SD)", "min": "minimum", "max": "maximum", "median": "median",
        "p10": "10th percentile", "p50": "median", "p90": "90th percentile", "rate": "share of frames present",
        "delta_mean": "mean change", "delta_std": "variability of change"}
GAZE_EYE = {"0": "left eye", "1": "right eye", "h0": "left eye, head frame", "h1": "right eye, head frame"}
GAZE_AXIS = {"x": "left-right", "y": "up-down", "z": "towards-away"}
POSE = {"Tx": "head position left-right", "Ty": "head position up-down", "Tz": "head distance from camera",
        "Rx": "head pitch (nodding up-down)", "Ry": "head yaw (turning left-right)", "Rz": "head roll (tilting)"}
TEXT_DIM = re.compile(r"^(mean|emb|concat|cls)_(\d+)$")
LOGMEL = re.compile(r"^(d?)logmel(\d+)_(\w+)$")


@dataclass(frozen=True)
class Feature:
    """A column described: `label` (short), `family` (modality-level kind), `interpretable`
    (False for embedding dimensions, which mean something only together)."""

    column: str
    feature_set: str
    label: str
    family: str
    interpretable: bool = True
    #: whether the raw value means something to a reader (a pitch in semitones, an AU intensity);
    #: log-Mel energies, MFCCs and embedding dimensions are shown against the cohort only
    raw_value: bool = True


def mel_centre_hz(band: int, n_mels: int = 64, f_min: float = 20.0, f_max: float = 8000.0) -> float:
    """Centre frequency of log-Mel band `band` (HTK mel scale, the logmel extractor's defaults)."""
    import numpy as np

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    return float(700.0 * (10 ** (mels[band + 1] / 2595.0) - 1.0))


def _egemaps(name: str) -> tuple[str, str] | None:
    base, _, functional = name.partition("_sma3")
    functional = functional.lstrip("nz_").lstrip("_") if functional else ""
    if not functional and name in LLD:
        return LLD[name], "voice (eGeMAPS)"
    region = ""
    for stem in ("alphaRatio", "hammarbergIndex", "spectralFlux", "slope0-500", "slope500-1500"):
        for tag, where in (("UV", " in unvoiced stretches"), ("V", " in voiced stretches")):
            if base == stem.replace("slope", f"slope{tag}") if stem.startswith("slope") else base == stem + tag:
                base, region = stem, where
    m = MFCC.match(base.rstrip("V")) if base.startswith("mfcc") else None
    if m:
        what = f"MFCC {m.group(1)} (timbre)" + (" in voiced stretches" if base.endswith("V") else "")
    elif FORMANT.match(base):
        f, kind = FORMANT.match(base).groups()
        what = {"frequency": f"formant F{f} frequency", "bandwidth": f"formant F{f} bandwidth",
                "amplitudeLogRelF0": f"formant F{f} relative amplitude"}[kind]
    elif base in LLD:
        what = LLD[base]
    else:
        return None
    stat = FUNCTIONAL.get(functional, functional)
    return (f"{what}{region}, {stat}" if stat else f"{what}{region}"), "voice (eGeMAPS)"


def _face(name: str) -> tuple[str, str] | None:
    m = re.match(r"^(AU\d\d)_([rc])$", name)
    if m:
        au, kind = m.groups()
        what = "intensity" if kind == "r" else "presence"
        return f"{au} {AU_NAMES.get(au, '')} {what}".replace("  ", " "), "facial action units"
    m = re.match(r"^gaze_(h?\d)_([xyz])$", name)
    if m:
        return f"gaze direction ({GAZE_EYE[m.group(1)]}), {GAZE_AXIS[m.group(2)]}", "gaze"
    m = re.match(r"^gaze_angle_([xy])$", name)
    if m:
        return f"gaze angle, {GAZE_AXIS[m.group(1)]}", "gaze"
    m = re.match(r"^pose_(T[xyz]|R[xyz])$", name)
    if m:
        return POSE[m.group(1)], "head pose"
    if name == "valid_fraction":
        return "share of video frames with a tracked face", "face tracking"
    if name == "n_frames":
        return "number of video frames", "face tracking"
    return None


def describe(column: str) -> Feature:
    """Plain-language label of a model column such as `face_session/AU04_r__mean` →
    "AU04 brow lowerer intensity, mean"."""
    feature_set, _, name = column.rpartition("/")
    parts = name.split("__")
    base, stats = parts[0], parts[1:]
    label, family, interpretable, raw_value = None, "other", True, True
    m = LOGMEL.match(base)
    if m:
        delta, band, stat = m.groups()
        hz = mel_centre_hz(int(band))
        what = "change over time of " if delta else ""
        label = f"{what}sound energy near {hz:,.0f} Hz (log-Mel band {int(band)}), {STAT.get(stat, stat)}"
        family, raw_value = "voice spectrum (log-Mel)", False
    elif TEXT_DIM.match(base):
        _, dim = TEXT_DIM.match(base).groups()
        label, family = f"sentence-embedding dimension {int(dim)} of the words", "sentence embedding of the words"
        interpretable = raw_value = False
    elif base.startswith("p_"):
        label, family = f"probability of '{base[2:]}' from the emotion recogniser", "emotion recogniser"
    elif base.startswith("cue_") or base.startswith("cues_"):
        label, family, interpretable, raw_value = f"textualised cue {base}", "textualised cues", False, False
    else:
        found = _face(base) or _egemaps(base)
        if found:
            label, family = found
            raw_value = "MFCC" not in label  # cepstral coefficients have no unit a reader knows
    if label is None:
        return Feature(column, feature_set, name, family, interpretable=False, raw_value=False)
    for i, stat in enumerate(stats):
        word = {"std": "SD"}.get(stat, STAT.get(stat, stat))
        label += f", {word}" if i == 0 and not label.count(",") else f"; {word} over turns"
    return Feature(column, feature_set, label, family, interpretable, raw_value)
