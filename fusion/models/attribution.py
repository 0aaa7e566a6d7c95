"""Feature contributions on the scale of the fused decision.

A fusion model's decision for class c is a sum of per-modality terms (log-linear fusion: the
modality's fusion weight × its calibrated, class-centred log-probability of c; a linear pool:
its normalised weight × its calibrated probability of c). A modality's contribution is its term
for this sample minus its term for the average training sample (its learner's reference), and
each feature's contribution is its part of that difference, passed through the learner's
margins, the calibration and the fusion layer — so that a modality's feature contributions add
up to the modality's contribution, on one scale.

The split of a term's difference over features is Integrated Gradients along the straight path
in the learner's margin space (Sundararajan et al., 2017): exact where the term is linear in the
margins (temperature or no calibration of a softmax learner) or the learner has one margin (the
ordinal learner's latent score), and made to add up exactly otherwise (the path integral's small
discretisation error is spread over the features in proportion to their size).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Score = Callable[[np.ndarray], np.ndarray]
STEPS = 16
STEP = 1e-4


def decision_attributions(learner, X: np.ndarray, score: Score, steps: int = STEPS
                          ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-feature contributions of `X` to `score(learner's probabilities)`, relative to the
    learner's reference (`Learner.margin_parts`).

    Args:
        score: (n, k) probabilities → (n, k) the sample's term in the fused decision, per class.

    Returns:
        (parts (n, features, k), total (n, k) = score(X) − score(reference)); None when the
        learner has no margin split.
    """
    split = learner.margin_parts(X)
    if split is None:
        return None
    margin, reference, parts = split

    def term(m: np.ndarray) -> np.ndarray:
        return score(learner.proba_from_margin(m))

    total = term(margin) - term(reference)
    delta = margin - reference  # (n, d)
    n, d = delta.shape
    if d == 1:  # one margin: every feature moves the sample along it, in proportion to its part
        ratio = np.divide(total, delta, out=np.zeros_like(total), where=np.abs(delta) > 1e-12)
        out = parts[:, :, 0][:, :, None] * ratio[:, None, :]
    else:
        grads = np.zeros((n, d, total.shape[1]))
        for a in (np.arange(steps) + 0.5) / steps:
            point = reference + a * delta
            for j in range(d):
                e = np.zeros(d)
                e[j] = STEP
                grads[:, j] += (term(point + e) - term(point - e)) / (2 * STEP)
        out = np.einsum("nfd,ndk->nfk", parts, grads / steps)
    # spread what the discretisation left over the features, in proportion to their size
    gap = total - out.sum(1)
    size = np.abs(out)
    weight = np.divide(size, size.sum(1, keepdims=True), out=np.full_like(size, 1.0 / out.shape[1]),
                       where=size.sum(1, keepdims=True) > 0)
    return out + weight * gap[:, None, :], total


def reference_total(learner, X: np.ndarray, score: Score) -> np.ndarray | None:
    """score(X) − score(the learner's average training sample), for a learner without a margin
    split but with a reference input; None when it has neither."""
    ref = learner.reference_input()
    if ref is None:
        return None
    return score(learner.predict_proba(X)) - score(learner.predict_proba(np.asarray(ref)[None, :]))
