"""The extractor interface and the small value types every modality shares.

An extractor is a small object with `name`, `params`, `feature_names` and
`process_sample` / `process_file` / `process_files`, each returning a DataFrame indexed by
`(sample_id, start, end)` in seconds. A whole-sample row has start 0 and end = duration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

INDEX = ["sample_id", "start", "end"]


class ExtractionError(Exception):
    """A sample could not be processed; the message names the file and what was expected.

    Args:
        path: the file that failed, when one did (recorded in the errors table).
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


class MissingMediaError(ExtractionError):
    """A sample lacks the media an extractor needs (for example no audio file)."""


@dataclass(frozen=True)
class Segment:
    """A time span of a sample, in seconds, optionally with the speaker and the words said."""

    start: float
    end: float
    speaker: str | None = None
    text: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Sample:
    """One recording (a session, a clip, an image) as a dataset adapter yields it.

    Args:
        sample_id: unique id within its dataset.
        subject_id: the person; splits never put one subject on two sides.
        media: role → file, e.g. {"audio": ..., "transcript": ..., "face_au": ...}.
        labels: label name → value.
        split: the official split this sample belongs to, if the corpus has one.
        text: the words of a sample that is one utterance given in a table rather than a
            transcript file (MELD); None otherwise.
        group: a grouping within the corpus other than the subject (a MELD dialogue).
        duration: length in seconds when the adapter knows it without reading media.
        span: (start, end) in seconds when the sample is a part of its media (a clip of a
            longer video); whole-sample features then cover only that part.
        context: what was said before this utterance in its group, oldest first, as
            (speaker, words) pairs (MELD: the dialogue's earlier utterances); empty otherwise.
        speaker: who says `text`, when the adapter knows (MELD: the character).
    """

    sample_id: str
    subject_id: str
    media: Mapping[str, Path] = field(default_factory=dict)
    labels: Mapping[str, Any] = field(default_factory=dict)
    split: str | None = None
    text: str | None = None
    group: str | None = None
    duration: float | None = None
    span: tuple[float, float] | None = None
    context: tuple[tuple[str, str], ...] = ()
    speaker: str | None = None


@dataclass
class BatchResult:
    """What `Extractor.process_samples` returns for a batch of samples.

    Attributes:
        frame: rows of every sample that succeeded (None if none did).
        errors: sample id → the exception that made it fail.
        warnings: sample id → warnings about a kept sample.
    """

    frame: pd.DataFrame | None
    errors: dict[str, BaseException]
    warnings: dict[str, list[str]]


class Params(BaseModel):
    """Base of every extractor's parameter model: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_params(owner: str, model: type[BaseModel], params: Mapping[str, Any]) -> BaseModel:
    """Validate `params` against `model`, raising scikit-learn-style messages.

    Raises:
        ValueError: "The 'x' parameter of Owner must be …, got … instead."
    """
    try:
        return model(**params)
    except ValidationError as err:
        valid = ", ".join(model.model_fields)
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                lines.append(f"{owner} has no parameter {key!r}. Valid parameters: {valid}.")
            else:
                lines.append(
                    f"The {key!r} parameter of {owner} must be valid: {e['msg']}, "
                    f"got {e.get('input')!r} instead."
                )
        raise ValueError("\n".join(lines)) from None


def feature_frame(
    sample_id: str,
    spans: Sequence[tuple[float, float]],
    values: np.ndarray,
    feature_names: Sequence[str] | pd.Index,
) -> pd.DataFrame:
    """Build the canonical feature DataFrame indexed by `(sample_id, start, end)`.

    Called once per sample, so it builds the index from levels and codes directly (several
    times faster than `MultiIndex.from_arrays`); pass a `pd.Index` of names to avoid
    rebuilding it each time.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (len(spans), len(feature_names)):
        raise ValueError(
            f"feature values for {sample_id!r} have shape {values.shape}, expected "
            f"({len(spans)}, {len(feature_names)})"
        )
    starts = np.fromiter((s for s, _ in spans), dtype=np.float64, count=len(spans))
    ends = np.fromiter((e for _, e in spans), dtype=np.float64, count=len(spans))
    start_levels, start_codes = np.unique(starts, return_inverse=True)
    end_levels, end_codes = np.unique(ends, return_inverse=True)
    index = pd.MultiIndex(
        levels=[pd.Index([sample_id], dtype=object), start_levels, end_levels],
        codes=[np.zeros(len(spans), dtype=np.int64), start_codes, end_codes],
        names=INDEX, verify_integrity=False,
    )
    columns = feature_names if isinstance(feature_names, pd.Index) else pd.Index(list(feature_names))
    return pd.DataFrame(values, index=index, columns=columns, copy=False)


class Extractor(ABC):
    """Base class of all feature extractors.

    Subclasses declare `name`, `version` (bump it when the numbers an extractor produces
    change), `modality`, the media roles they read (`media`) and a `Params` model.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    modality: ClassVar[str]
    media: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[Params]] = Params
    chunk_size: ClassVar[int | None] = None  # samples per task; None lets the runner choose
    nan_is_padding: ClassVar[bool] = False  # NaN marks padding by design (token ids), not a bad value

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(type(self).__name__, self.Params, params)

    def get_params(self) -> dict[str, Any]:
        """Parameters as plain JSON-able values (the ones that enter the store's hash)."""
        return self.params.model_dump(mode="json")

    @property
    @abstractmethod
    def feature_names(self) -> list[str]:
        """Names of the columns `process_*` returns, in order."""

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries whose numbers this extractor depends on."""
        return {}

    def check(self) -> None:  # noqa: B027 - an optional hook; most extractors need no check
        """Fail early, before any sample, when the extractor cannot run at all (a model or
        its weights missing). Raises ExtractionError saying how to provide what is missing."""

    def source_files(self, sample: Sample) -> dict[str, Path]:
        """The files of `sample` this extractor reads, by role.

        Raises:
            MissingMediaError: when the sample has none of the roles this extractor reads.
        """
        found = {role: Path(sample.media[role]) for role in self.media if role in sample.media}
        if not found:
            raise MissingMediaError(
                f"sample {sample.sample_id!r} has no {' or '.join(self.media)} file "
                f"(it has: {', '.join(sample.media) or 'no media'}); {self.name} needs one"
            )
        return found

    def segments_as_samples(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-segment rows with the columns they would have if each segment were a whole
        sample (how a model trained on whole samples, such as utterances, reads segments).
        Most extractors give the same columns either way; the sentence extractor does not."""
        return frame

    def source_payload(self, sample: Sample) -> str | None:
        """In-memory source content that enters the sample's hash (e.g. an utterance's text)."""
        return None

    @abstractmethod
    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        """Features of one sample: one row per segment, or one whole-sample row if None."""

    def process_samples(self, items: Sequence[tuple[Sample, Sequence[Segment] | None]]) -> BatchResult:
        """Features of several samples at once: one frame with the rows of every sample that
        succeeded, and the failures and warnings of each sample.

        Extractors that gain from batching across samples (text encoders) override this.
        """
        frames: list[pd.DataFrame] = []
        result = BatchResult(None, {}, {})
        for sample, segments in items:
            try:
                frame = self.process_sample(sample, segments)
                if frames and not frame.columns.equals(frames[0].columns):
                    raise ExtractionError(
                        f"sample {sample.sample_id!r}: {self.name} produced other columns than for "
                        f"{frames[0].index[0][0]!r} ({len(frame.columns)} vs {len(frames[0].columns)})")
            except Exception as err:  # noqa: BLE001 - returned to the caller, who records it
                result.errors[sample.sample_id] = err
                continue
            result.warnings[sample.sample_id] = list(frame.attrs.pop("warnings", []))
            frames.append(frame)
        if frames:
            result.frame = frames[0] if len(frames) == 1 else pd.concat(frames)
        return result

    def sample_from_batch(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        """`process_sample` for extractors that work in batches (`process_samples`): one
        sample's rows, its error raised, its warnings in `frame.attrs`."""
        batch = self.process_samples([(sample, segments)])
        if sample.sample_id in batch.errors:
            raise batch.errors[sample.sample_id]
        batch.frame.attrs["warnings"] = batch.warnings.get(sample.sample_id, [])
        return batch.frame

    def process_file(
        self,
        path: str | Path,
        segments: Sequence[Segment] | None = None,
        sample_id: str | None = None,
    ) -> pd.DataFrame:
        """Features of one file; the sample id defaults to the path."""
        path = Path(path)
        sample = Sample(sample_id or str(path), subject_id="", media={self.media[0]: path})
        return self.process_sample(sample, segments)

    def process_files(
        self,
        paths: Iterable[str | Path],
        segments: Mapping[str, Sequence[Segment]] | None = None,
    ) -> pd.DataFrame:
        """Features of several files, concatenated; `segments` maps path → its segments."""
        frames = [
            self.process_file(p, None if segments is None else segments.get(str(p)))
            for p in paths
        ]
        return pd.concat(frames) if frames else self.empty_frame()

    def empty_frame(self) -> pd.DataFrame:
        return feature_frame("", [], np.empty((0, len(self.feature_names))), self.feature_names)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
