"""Turn and window segmentation from transcripts, shared by every modality.

The same segments drive the audio, text and face extractors, so their rows join on
`(sample_id, start, end)`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import model_validator

from features.base import ExtractionError, Params, Sample, Segment

# Accepted spellings of the transcript columns, lower-cased (DAIC-WOZ, E-DAIC, generic).
_START = ("start_time", "start", "starttime", "begin")
_END = ("stop_time", "end_time", "end", "stop", "endtime")
_SPEAKER = ("speaker", "spk")
_TEXT = ("value", "text", "utterance", "transcript")


def _find(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in columns:
            return columns[n]
    return None


def read_transcript(path: str | Path, warnings: list[str] | None = None) -> pd.DataFrame:
    """Read a DAIC-WOZ (tab-separated) or E-DAIC (comma-separated) transcript.

    Rows with a missing or non-numeric start or stop time are left out, and rows without
    text kept, each with a warning naming the file and the lines (appended to `warnings`). An
    infinite stop time ends the turn where the next row starts (warned about); the last row's
    stays infinite, for the segmenter to cut at the end of the recording.

    Returns:
        DataFrame with columns start, end, speaker (None where the file has no speaker
        column) and text, in file order, indexed by the row's position in the file (0 = the
        first row after the header).

    Raises:
        ExtractionError: naming the file for bad encoding, missing columns, no usable rows,
            negative or backwards times.
    """
    path = Path(path)
    notes = warnings if warnings is not None else []
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ExtractionError(f"{path}: cannot read transcript ({err.strerror})", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ExtractionError(
            f"{path}: transcript is not valid UTF-8 (byte {err.start}: {raw[err.start:err.start+1]!r})", path
        ) from None
    if not text.strip():
        raise ExtractionError(f"{path}: transcript is empty (expected a header and turn rows)", path)
    first = text.splitlines()[0]
    sep = "\t" if "\t" in first else ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                         quoting=0, on_bad_lines="error", index_col=False)
    except (pd.errors.ParserError, ValueError) as err:
        hint = " (a text with commas must be quoted in a comma-separated file)" if sep == "," else ""
        raise ExtractionError(f"{path}: cannot parse transcript as {sep!r}-separated: {str(err).strip()}{hint}",
                              path) from None
    cols = {c.strip().lower(): c for c in df.columns}
    start_c, end_c = _find(cols, _START), _find(cols, _END)
    text_c, spk_c = _find(cols, _TEXT), _find(cols, _SPEAKER)
    missing = [n for n, c in (("start time", start_c), ("end time", end_c), ("text", text_c)) if c is None]
    if missing:
        raise ExtractionError(
            f"{path}: transcript lacks {', '.join(missing)} column(s); found columns "
            f"{list(df.columns)}, expected DAIC-WOZ 'start_time, stop_time, speaker, value' "
            f"or E-DAIC 'Start_Time, End_Time, Text'", path
        )
    if df.empty:
        raise ExtractionError(f"{path}: transcript has a header but no turns", path)
    out = pd.DataFrame(
        {
            "start": pd.to_numeric(df[start_c].str.strip(), errors="coerce"),
            "end": pd.to_numeric(df[end_c].str.strip(), errors="coerce"),
            "speaker": df[spk_c].str.strip() if spk_c else None,
            "text": df[text_c].astype(str).str.strip(),
        }
    )
    inf = out.index[np.isinf(out["end"]) & np.isfinite(out["start"])]
    if len(inf):
        # the next row's start (of any speaker, even one whose own stop time is missing) is
        # when this turn must have ended
        nxt = out["start"].where(np.isfinite(out["start"])).bfill().shift(-1)
        follow = inf[nxt.loc[inf].notna() & (nxt.loc[inf] > out.loc[inf, "start"])]
        out.loc[follow, "end"] = nxt.loc[follow]
        notes.append(f"{path}: infinite stop time in {_rows(inf)}; "
                     + (f"{len(follow)} turn(s) end where the next row starts" if len(follow) else "")
                     + ("; " if len(follow) and len(inf) > len(follow) else "")
                     + ("the last one is cut at the end of the recording" if len(inf) > len(follow) else ""))
    bad = out.index[out["start"].isna() | out["end"].isna()]
    if len(bad) == len(out):
        raise ExtractionError(f"{path}: no usable turn: missing or non-numeric times in {_rows(bad)} "
                              f"(columns {start_c!r}, {end_c!r})", path)
    if len(bad):
        notes.append(f"{path}: {len(bad)} row(s) with a missing or non-numeric start or stop time left out "
                     f"({_rows(bad)})")
        out = out.drop(index=bad)
    if np.isinf(out["start"]).any():
        raise ExtractionError(f"{path}: infinite start time in {_rows(out.index[np.isinf(out['start'])])}", path)
    bad = out.index[(out["start"] < 0) | (out["end"] < 0)]
    if len(bad):
        raise ExtractionError(f"{path}: negative times in {_rows(bad)}", path)
    bad = out.index[out["end"] < out["start"]]
    if len(bad):
        raise ExtractionError(f"{path}: end time before start time in {_rows(bad)}", path)
    empty = out.index[out["text"] == ""]
    if len(empty):
        notes.append(f"{path}: {len(empty)} row(s) with no text ({_rows(empty)}); their turns are kept")
    return out


def select_speaker(df: pd.DataFrame, speaker: str | None, path: Path, warnings: list[str]) -> pd.DataFrame:
    """The turns of `speaker` ("all" or None: every turn).

    Raises:
        ExtractionError: when a speaker is asked for but the transcript has no speaker column
            (its turns cannot be told apart: the interviewer's would be taken as the
            participant's), or has no turn of that speaker.
    """
    if speaker is None or speaker.lower() == "all":
        return df
    if df["speaker"].isna().all():
        raise ExtractionError(
            f"{path}: the transcript has no speaker column, so the turns of speaker {speaker!r} cannot be "
            "told apart from the others; set `speaker: all` to use every turn (E-DAIC transcripts hold "
            "the participant only)", path)
    blank = df.index[df["speaker"].fillna("") == ""]
    if len(blank):
        warnings.append(f"{path}: {len(blank)} row(s) without a speaker left out ({_rows(blank)})")
    keep = df["speaker"].fillna("").str.lower() == speaker.lower()
    if not keep.any():
        found = sorted(set(df["speaker"].dropna()) - {""})
        raise ExtractionError(f"{path}: no turns of speaker {speaker!r} (speakers found: {found})", path)
    return df[keep]


def _rows(index: pd.Index) -> str:
    # +2: one for the header line, one because people count lines from 1.
    lines = [i + 2 for i in index[:5]]
    shown = ", ".join(str(i) for i in lines)
    return f"line{'s' if len(index) > 1 else ''} {shown}{' …' if len(index) > 5 else ''}"


class SegmentationConfig(Params):
    """How a sample is cut into segments.

    `session`: one whole-sample row. `turn`: one row per transcript turn of `speaker` ("all"
    or null: every turn; a named speaker needs a transcript with a speaker column), optionally
    merged and split, and cut at the end of the sample's audio when it has one. `window`:
    fixed windows of `window` seconds every `hop` seconds over the whole recording.
    """

    level: Literal["session", "turn", "window"] = "session"
    speaker: str | None = "Participant"
    merge_gap: float = 0.0
    min_turn: float = 0.0
    max_turn: float | None = None
    window: float = 10.0
    hop: float | None = None

    @model_validator(mode="after")
    def _check(self) -> SegmentationConfig:
        if self.merge_gap < 0 or self.min_turn < 0:
            raise ValueError("merge_gap and min_turn must be >= 0")
        if self.max_turn is not None and self.max_turn <= 0:
            raise ValueError("max_turn must be > 0 (or null for no splitting)")
        if self.window <= 0 or (self.hop is not None and self.hop <= 0):
            raise ValueError("window and hop must be > 0")
        return self


@dataclass
class Segmentation:
    """Segments of one sample (None = whole sample) and any warnings met on the way."""

    segments: list[Segment] | None
    warnings: list[str]


class Segmenter:
    """Turns a sample into segments according to a `SegmentationConfig`."""

    def __init__(self, config: SegmentationConfig | None = None) -> None:
        self.config = config or SegmentationConfig()

    def source_files(self, sample: Sample) -> dict[str, Path]:
        """Files the segmentation reads (they enter the sample's source hash): the transcript,
        and for turns the audio whose length the turns are cut to."""
        if self.config.level == "turn":
            if "transcript" not in sample.media:
                raise ExtractionError(
                    f"sample {sample.sample_id!r} has no transcript; turn segmentation needs one"
                )
            files = {"transcript": Path(sample.media["transcript"])}
            if "audio" in sample.media:
                files["audio"] = Path(sample.media["audio"])
            return files
        return {}

    def segment(self, sample: Sample) -> Segmentation:
        """Segments of a sample; a sample that is a span of its media is confined to it."""
        cfg = self.config
        span = sample.span
        if cfg.level == "session":
            return Segmentation(None if span is None else [Segment(*span)], [])
        if cfg.level == "window":
            if span is not None:
                windows = fixed_windows(span[1] - span[0], cfg.window, cfg.hop or cfg.window)
                return Segmentation([Segment(w.start + span[0], w.end + span[0]) for w in windows], [])
            return Segmentation(self._windows(sample), [])
        path = Path(sample.media["transcript"])
        notes: list[str] = []
        duration = None
        if "audio" in sample.media and span is None:
            try:
                duration = audio_duration(sample.media["audio"]) or None  # an empty file says nothing
            except ExtractionError as err:
                notes.append(f"{err}; turns are not cut to the audio's length")
        seg = turns_from_transcript(path, cfg, duration)
        seg.warnings[:0] = notes
        if span is not None:
            inside = [s for s in seg.segments if s.end > span[0] and s.start < span[1]]
            seg = Segmentation([Segment(max(s.start, span[0]), min(s.end, span[1]), s.speaker, s.text)
                                for s in inside], seg.warnings)
        return seg

    def _windows(self, sample: Sample) -> list[Segment]:
        cfg = self.config
        if "audio" in sample.media:
            duration = audio_duration(sample.media["audio"])
        elif "transcript" in sample.media:
            duration = float(read_transcript(sample.media["transcript"])["end"].max())
        else:
            raise ExtractionError(
                f"sample {sample.sample_id!r}: window segmentation needs audio or a transcript "
                "to know the duration"
            )
        return fixed_windows(duration, cfg.window, cfg.hop or cfg.window)


def fixed_windows(duration: float, window: float, hop: float) -> list[Segment]:
    """Windows of `window` s every `hop` s; the last one is cut at `duration`."""
    if duration <= 0:
        return []
    n = max(1, math.ceil((duration - window) / hop) + 1) if duration > window else 1
    starts = np.arange(n) * hop
    return [Segment(float(s), float(min(s + window, duration))) for s in starts if s < duration]


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, from its header.

    Raises:
        ExtractionError: naming the file when its header cannot be read.
    """
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError, OSError) as err:
        raise ExtractionError(f"{path}: cannot read audio header: {err}", path) from None


def turns_from_transcript(path: Path, cfg: SegmentationConfig, duration: float | None = None) -> Segmentation:
    """Turns of a transcript, merged and split per `cfg`; with the recording's `duration`,
    turns that start after it are left out and turns that end after it are cut, each with a
    warning naming the lines (so that every modality gets the same segments)."""
    warnings: list[str] = []
    df = select_speaker(read_transcript(path, warnings), cfg.speaker, path, warnings)
    if duration is not None:
        after = df.index[df["start"] >= duration]
        if len(after):
            warnings.append(f"{path}: {len(after)} turn(s) start after the audio ends ({duration:.2f} s) and are "
                            f"left out ({_rows(after)})")
            df = df.drop(index=after)
        long = df.index[df["end"] > duration]
        if len(long):
            warnings.append(f"{path}: {len(long)} turn(s) end after the audio ends and are cut at {duration:.2f} s "
                            f"({_rows(long)})")
            df = df.assign(end=df["end"].clip(upper=duration))
    else:
        endless = df.index[np.isinf(df["end"])]
        if len(endless):
            warnings.append(f"{path}: {len(endless)} turn(s) with an infinite stop time and no audio to end them "
                            f"are left out ({_rows(endless)})")
            df = df.drop(index=endless)
    if df.empty:
        raise ExtractionError(f"{path}: no turn left within the recording", path)
    zero = df["end"] <= df["start"]
    if zero.any():
        warnings.append(f"{path}: dropped {int(zero.sum())} zero-length turn(s) in {_rows(df.index[zero])}")
        df = df[~zero]
    if not df["start"].is_monotonic_increasing:
        warnings.append(f"{path}: turns are not in time order; sorted by start time")
        df = df.sort_values("start", kind="stable")
    turns = [[float(r.start), float(r.end), str(r.text)] for r in df.itertuples()]
    merged: list[list] = []
    n_overlap = 0
    for t in turns:
        if merged and t[0] < merged[-1][1]:
            n_overlap += 1
            merged[-1][1] = max(merged[-1][1], t[1])
            merged[-1][2] = f"{merged[-1][2]} {t[2]}".strip()
        elif merged and t[0] - merged[-1][1] <= cfg.merge_gap and cfg.merge_gap > 0:
            merged[-1][1] = t[1]
            merged[-1][2] = f"{merged[-1][2]} {t[2]}".strip()
        else:
            merged.append(list(t))
    if n_overlap:
        warnings.append(f"{path}: {n_overlap} overlapping turn(s) of the same speaker were merged")
    if cfg.min_turn > 0:
        merged = _absorb_short(merged, cfg.min_turn)
    speaker = cfg.speaker if df["speaker"].notna().all() and (cfg.speaker or "").lower() != "all" else None
    segments: list[Segment] = []
    for start, end, text in merged:
        if cfg.max_turn and end - start > cfg.max_turn:
            segments.extend(_split(start, end, text, cfg.max_turn, speaker))
        else:
            segments.append(Segment(start, end, speaker, text))
    return Segmentation(segments, warnings)


def _absorb_short(turns: list[list], min_turn: float) -> list[list]:
    """Merge each turn shorter than `min_turn` into the following one (the last: the previous)."""
    out: list[list] = []
    carry: list | None = None
    for t in turns:
        if carry is not None:
            t = [carry[0], t[1], f"{carry[2]} {t[2]}".strip()]
            carry = None
        if t[1] - t[0] < min_turn:
            carry = t
        else:
            out.append(t)
    if carry is not None:
        if out:
            out[-1] = [out[-1][0], carry[1], f"{out[-1][2]} {carry[2]}".strip()]
        else:
            out.append(carry)
    return out


def _split(start: float, end: float, text: str, max_turn: float, speaker: str | None) -> list[Segment]:
    n = math.ceil((end - start) / max_turn - 1e-9)
    edges = np.linspace(start, end, n + 1)
    words = text.split()
    cuts = np.linspace(0, len(words), n + 1).round().astype(int)
    return [
        Segment(float(edges[i]), float(edges[i + 1]), speaker, " ".join(words[cuts[i]:cuts[i + 1]]))
        for i in range(n)
    ]
