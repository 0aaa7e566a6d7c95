"""Per-segment model inputs: a modality as an (n, T, d) sequence of each sample's segments.

A feature set extracted per turn (or per window) has one store row per `(sample_id, start,
end)`. `sequence_blocks` lays those rows out as one array per modality, aligned across
modalities on the same segments: for every sample the segments of all sequence modalities are
united and ordered by start time, and a modality that lacks a segment has a NaN row there
(masked, never dropped or zero-filled). Padding past a sample's last segment is NaN too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SequenceBlock:
    """One modality's segments for n samples.

    Attributes:
        values: (n, T, d) features; NaN rows where the modality lacks the segment or past the
            sample's last segment.
        starts, ends: (n, T) segment times in seconds (NaN past the last segment).
        lengths: (n,) segments of each sample on the shared grid (all modalities united).
        columns: the d feature names.
    """

    values: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    lengths: np.ndarray
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n, t, _ = self.values.shape
        for name in ("starts", "ends"):
            if getattr(self, name).shape != (n, t):
                raise ValueError(f"SequenceBlock.{name} has shape {getattr(self, name).shape}, "
                                 f"expected {(n, t)}")
        if self.lengths.shape != (n,):
            raise ValueError(f"SequenceBlock.lengths has shape {self.lengths.shape}, expected {(n,)}")

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape

    @property
    def mask(self) -> np.ndarray:
        """(n, T): the segments this modality has (a row that is not all NaN)."""
        return ~np.isnan(self.values).all(axis=2)

    def __getitem__(self, rows) -> SequenceBlock:
        return SequenceBlock(self.values[rows], self.starts[rows], self.ends[rows], self.lengths[rows],
                             self.columns)

    def with_values(self, values: np.ndarray) -> SequenceBlock:
        """The same segments with other values (same shape)."""
        return SequenceBlock(values, self.starts, self.ends, self.lengths, self.columns)

    def missing_like(self) -> SequenceBlock:
        """The same grid with every segment missing (the modality absent)."""
        return self.with_values(np.full_like(self.values, np.nan))


Block = np.ndarray | SequenceBlock


def available(X: Block) -> np.ndarray:
    """Samples where the modality exists: a pooled row that is not all NaN, or a sequence with
    at least one present segment."""
    if isinstance(X, SequenceBlock):
        return X.mask.any(axis=1)
    return ~np.isnan(X).all(axis=1)


def missing_like(X: Block) -> Block:
    """The block with every sample's modality missing."""
    return X.missing_like() if isinstance(X, SequenceBlock) else np.full_like(X, np.nan)


def feature_sd(X: Block) -> np.ndarray:
    """Per-feature standard deviation over samples (pooled) or present segments (sequences)."""
    values = X.values.reshape(-1, X.values.shape[2]) if isinstance(X, SequenceBlock) else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: NaN
        return np.nanstd(values, axis=0)


def add_noise(X: Block, noise: np.ndarray) -> Block:
    """`X` plus `noise` of its own shape (NaN stays NaN)."""
    if isinstance(X, SequenceBlock):
        return X.with_values(X.values + noise)
    return X + noise


def block_shape(X: Block) -> tuple[int, ...]:
    return X.values.shape if isinstance(X, SequenceBlock) else X.shape


def sequence_blocks(frames: Mapping[str, pd.DataFrame], index: Sequence[str],
                    max_len: Mapping[str, int | None] | None = None) -> tuple[dict[str, SequenceBlock], list[str]]:
    """Aligned (n, T, d) blocks from per-segment frames indexed by `(sample_id, start, end)`.

    Args:
        frames: modality → its feature rows (several feature sets of one modality already
            joined column-wise on the same index).
        index: the sample ids, in the order of the blocks' rows; a sample absent from a
            modality's frame is missing in it (every segment NaN).
        max_len: per modality, keep at most this many segments of each sample (the first
            ones); the shared grid is cut at the smallest such limit.

    Returns:
        the blocks and notes (how many samples were cut to `max_len`).
    """
    notes: list[str] = []
    keys = {}
    for m, frame in frames.items():
        if frame.index.nlevels != 3:
            raise ValueError(f"modality {m!r}: sequence inputs need rows indexed by (sample_id, start, end)")
        keys[m] = frame.index.droplevel(0).to_frame(index=False).assign(
            sample_id=frame.index.get_level_values(0))
    grid = pd.concat(keys.values(), ignore_index=True).drop_duplicates()
    grid = grid[grid["sample_id"].isin(set(index))]
    grid = grid.sort_values(["sample_id", "start", "end"], kind="stable")
    grid["pos"] = grid.groupby("sample_id").cumcount()
    limits = [v for v in (max_len or {}).values() if v]
    cap = min(limits) if limits else None
    if cap is not None:
        too_long = grid.loc[grid["pos"] >= cap, "sample_id"].nunique()
        if too_long:
            notes.append(f"{too_long} sample(s) have more than {cap} segments; only their first {cap} are used")
        grid = grid[grid["pos"] < cap]
    n = len(index)
    row_of = {sid: i for i, sid in enumerate(index)}
    t = int(grid["pos"].max()) + 1 if len(grid) else 1
    starts = np.full((n, t), np.nan)
    ends = np.full((n, t), np.nan)
    lengths = np.zeros(n, dtype=np.int64)
    rows = grid["sample_id"].map(row_of).to_numpy()
    pos = grid["pos"].to_numpy()
    starts[rows, pos] = grid["start"].to_numpy()
    ends[rows, pos] = grid["end"].to_numpy()
    np.maximum.at(lengths, rows, pos + 1)
    slot = pd.Series(pos, index=pd.MultiIndex.from_arrays(
        [grid["sample_id"].to_numpy(), grid["start"].to_numpy(), grid["end"].to_numpy()]))
    blocks = {}
    for m, frame in frames.items():
        values = np.full((n, t, frame.shape[1]), np.nan)
        where = slot.reindex(frame.index)
        ok = where.notna().to_numpy()
        r = frame.index.get_level_values(0)[ok].map(row_of).to_numpy()
        values[r, where.to_numpy()[ok].astype(int)] = frame.to_numpy(dtype=np.float64)[ok]
        blocks[m] = SequenceBlock(values, starts, ends, lengths, tuple(map(str, frame.columns)))
    return blocks, notes
