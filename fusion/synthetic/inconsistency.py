"""Sessions whose label depends only on the turn-by-turn agreement of two streams' emotions.

Each session has `n_turns` turns. Every turn carries an emotion in the words (drawn at random
from `n_emotions`) and one in the voice. In a congruent session (label 0) the voice carries the
words' emotion in every turn; in an inconsistent one (label 1) a fraction `mismatch` of its turns
are spoken with another emotion (negative words in a calm voice, cheerful words in a flat one).
Every emotion is equally likely in each stream, turn by turn, in both classes, so each stream
alone says nothing about the label: only a model that compares the streams turn by turn can
beat chance. The features of a turn are its emotion's prototype in that stream plus noise (the
two streams have their own prototypes and widths); with `posteriors`, each stream also has
`p_<emotion>` columns, a noisy posterior over the emotions.

Used by the mechanism test of the ATEI model (`tests/test_atei.py`) and its benchmark.
"""

from __future__ import annotations

import numpy as np

from fusion.data.sequences import SequenceBlock

EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "surprised", "disgust")


def inconsistency_sessions(n_sessions: int, n_turns: int = 12, *, seed: int = 0, dims: tuple[int, int] = (16, 12),
                           n_emotions: int = 3, mismatch: float = 0.5, noise: float = 0.5,
                           posteriors: bool = False, min_turns: int | None = None
                           ) -> tuple[dict[str, SequenceBlock], np.ndarray]:
    """Blocks {"audio", "text"} of aligned turns and labels (n,) 0/1, half of each.

    Args:
        n_turns: turns per session (sessions have `min_turns`..`n_turns` of them; the rest is
            padding).
        dims: feature counts of the audio and the text stream.
        n_emotions: emotions drawn from (at most 7).
        mismatch: the fraction of an inconsistent session's turns whose voice disagrees.
        noise: sd of the features around their emotion's prototype (prototypes have sd 1).
    """
    if not 2 <= n_emotions <= len(EMOTIONS):
        raise ValueError(f"n_emotions must be 2..{len(EMOTIONS)}, got {n_emotions}")
    rng = np.random.default_rng(seed)
    y = np.arange(n_sessions) % 2
    rng.shuffle(y)
    words = rng.integers(0, n_emotions, (n_sessions, n_turns))
    shift = rng.integers(1, n_emotions, (n_sessions, n_turns))  # another emotion, uniformly
    flip = (rng.random((n_sessions, n_turns)) < mismatch) & (y[:, None] == 1)
    voice = np.where(flip, (words + shift) % n_emotions, words)
    lengths = rng.integers(min_turns or n_turns, n_turns + 1, n_sessions)
    pad = np.arange(n_turns)[None, :] >= lengths[:, None]
    starts = np.cumsum(rng.uniform(4.0, 12.0, (n_sessions, n_turns)), axis=1)
    starts = np.where(pad, np.nan, starts)
    ends = starts + 3.0
    names = EMOTIONS[:n_emotions]
    blocks = {}
    for stream, emo, d in (("audio", voice, dims[0]), ("text", words, dims[1])):
        protos = rng.normal(0, 1, (n_emotions, d))
        values = protos[emo] + rng.normal(0, noise, (n_sessions, n_turns, d))
        columns = [f"{stream}_f{i}" for i in range(d)]
        if posteriors:
            logits = 3.0 * np.eye(n_emotions)[emo] + rng.normal(0, 1.0, (n_sessions, n_turns, n_emotions))
            post = np.exp(logits - logits.max(-1, keepdims=True))
            values = np.concatenate([values, post / post.sum(-1, keepdims=True)], axis=-1)
            columns += [f"{stream}_emotion/p_{e}" for e in names]
        values[pad] = np.nan
        blocks[stream] = SequenceBlock(values, starts, ends, lengths, tuple(columns))
    return blocks, y
