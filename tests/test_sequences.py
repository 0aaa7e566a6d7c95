"""Per-turn sequence blocks: segments aligned across modalities, missing turns masked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.base import INDEX
from fusion.data.sequences import SequenceBlock, available, feature_sd, sequence_blocks


def frame(rows, columns):
    """rows: (sample_id, start, end, *values)."""
    index = pd.MultiIndex.from_tuples([r[:3] for r in rows], names=INDEX)
    return pd.DataFrame([r[3:] for r in rows], index=index, columns=columns)


def test_modalities_share_one_grid_and_missing_turns_are_nan_rows():
    audio = frame([("s1", 0.0, 2.0, 1.0, 10.0), ("s1", 5.0, 6.0, 2.0, 20.0), ("s2", 1.0, 3.0, 3.0, 30.0)],
                  ["a0", "a1"])
    text = frame([("s1", 5.0, 6.0, 0.5), ("s1", 3.0, 4.0, 0.7), ("s3", 0.0, 1.0, 0.9)], ["t0"])
    blocks, notes = sequence_blocks({"audio": audio, "text": text}, ["s1", "s2", "s3", "s4"])
    a, t = blocks["audio"], blocks["text"]
    assert a.shape == (4, 3, 2) and t.shape == (4, 3, 1) and notes == []
    # s1's grid: turns at 0, 3 and 5 s (the union, by start time) for both modalities
    np.testing.assert_array_equal(a.starts[0], [0.0, 3.0, 5.0])
    np.testing.assert_array_equal(t.starts[0], a.starts[0])
    np.testing.assert_array_equal(a.values[0, :, 0], [1.0, np.nan, 2.0])  # audio lacks the 3 s turn
    np.testing.assert_array_equal(t.values[0, :, 0], [np.nan, 0.7, 0.5])  # text lacks the 0 s turn
    np.testing.assert_array_equal(a.lengths, [3, 1, 1, 0])
    # s3 has text only; s4 has nothing: unavailable everywhere, never zero-filled
    np.testing.assert_array_equal(available(a), [True, True, False, False])
    np.testing.assert_array_equal(available(t), [True, False, True, False])
    assert np.isnan(a.values[3]).all() and np.isnan(a.starts[3]).all()
    assert a.columns == ("a0", "a1")


def test_max_len_keeps_the_first_segments_and_says_so():
    audio = frame([("s1", float(i), i + 0.5, float(i)) for i in range(6)] + [("s2", 0.0, 1.0, 9.0)], ["a"])
    blocks, notes = sequence_blocks({"audio": audio}, ["s1", "s2"], {"audio": 4})
    np.testing.assert_array_equal(blocks["audio"].values[0, :, 0], [0, 1, 2, 3])
    assert blocks["audio"].lengths.tolist() == [4, 1]
    assert notes == ["1 sample(s) have more than 4 segments; only their first 4 are used"]


def test_rows_subset_and_sd_over_present_segments():
    values = np.array([[[1.0], [3.0]], [[5.0], [np.nan]]])
    starts = np.array([[0.0, 1.0], [0.0, np.nan]])
    block = SequenceBlock(values, starts, starts + 1, np.array([2, 1]), ("x",))
    assert len(block[np.array([1])]) == 1 and block[np.array([1])].values[0, 0, 0] == 5.0
    np.testing.assert_allclose(feature_sd(block), [np.std([1.0, 3.0, 5.0])])
    with pytest.raises(ValueError, match="lengths"):
        SequenceBlock(values, starts, starts, np.array([1]))
