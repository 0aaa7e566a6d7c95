"""Per-turn speaker features of a dialogue, shared by the training data (`fusion.data.blocks`:
a sample's dialogue as a sequence of turns) and the `emotion` extractor (one utterance alone).

For the turn at position t of a dialogue whose sample (the utterance being classified) is at
position `at`:

- `turn:self` — 1 at the sample's own turn;
- `turn:same_speaker` — the turn's speaker is the sample's speaker;
- `turn:speaker_change` — the turn's speaker differs from the previous turn's (0 for the first);
- `turn:speaker_0 … turn:speaker_3` — who speaks, as the order in which the dialogue's speakers
  first speak (the fourth and any later speaker share `turn:speaker_3`), so the features mean
  the same in any dialogue, with any names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_SPEAKERS = 4
TURN_COLUMNS = ("turn:self", "turn:same_speaker", "turn:speaker_change",
                *(f"turn:speaker_{k}" for k in range(N_SPEAKERS)))


def turn_features(speakers: Sequence[str], at: int) -> np.ndarray:
    """(len(speakers), len(TURN_COLUMNS)) per-turn features of a dialogue spoken by `speakers`
    (in order), seen from the sample at position `at`."""
    n = len(speakers)
    if not 0 <= at < n:
        raise ValueError(f"turn_features: position {at} outside a dialogue of {n} turns")
    out = np.zeros((n, len(TURN_COLUMNS)))
    order: dict[str, int] = {}
    for t, who in enumerate(speakers):
        k = order.setdefault(who, len(order))
        out[t, 0] = t == at
        out[t, 1] = who == speakers[at]
        out[t, 2] = t > 0 and who != speakers[t - 1]
        out[t, 3 + min(k, N_SPEAKERS - 1)] = 1.0
    return out


def single_turn() -> np.ndarray:
    """The features of an utterance given alone (a dialogue of one turn)."""
    return turn_features(["speaker"], 0)[0]
