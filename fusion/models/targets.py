"""What a fusion model is fitted on: its targets, one head spec per kind.

A target is a head: `classes` (class indices; `ordinal` when the classes are ordered, as
severities), `score` (a number: regression, or an auxiliary score such as the PHQ-8 total next
to its severity classes), `binary` (an auxiliary 0/1 form of the classes), `multilabel` (0/1
per label, EMOTIC's 26 categories), `continuous` (several numbers, valence / arousal /
dominance) and `distribution` (a probability distribution per sample, VAD-mixture soft labels).
`FusionModel.fit(blocks, targets, …)` receives them; a model declares the heads it trains
(`FusionModel.heads`) and refuses targets it cannot, naming them. NaN marks an unknown value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

Task = Literal["classification", "regression", "multilabel"]
HEAD_KINDS = ("classes", "ordinal", "score", "binary", "multilabel", "continuous", "distribution")


@dataclass(frozen=True)
class Head:
    """One output a model trains: its kind (one of `HEAD_KINDS`) and size (classes, labels or
    dimensions; 1 for a score or a binary head)."""

    kind: str
    size: int


@dataclass
class Targets:
    """The targets of a fit, row-aligned with its blocks (build them with `classes`, `scores`
    or `multilabel`).

    Attributes:
        y: class indices (`classes` / `ordinal` head).
        n_classes: the number of classes.
        ordinal: whether the classes are ordered.
        score: the score (the main target of a regression, or an auxiliary one).
        binary: the 0/1 form of the classes (auxiliary).
        labels: (n, k) 0/1 labels. continuous: (n, d) numbers. distribution: (n, e) rows summing to 1.
        mixture: how `distribution` was made (saved with the model), when it was.
    """

    y: np.ndarray | None = None
    n_classes: int = 0
    ordinal: bool = False
    score: np.ndarray | None = None
    binary: np.ndarray | None = None
    labels: np.ndarray | None = None
    continuous: np.ndarray | None = None
    distribution: np.ndarray | None = None
    mixture: dict[str, Any] | None = None

    @classmethod
    def classes(cls, y: np.ndarray, n_classes: int, *, ordinal: bool = False, score: np.ndarray | None = None,
                binary: np.ndarray | None = None) -> Targets:
        """Class indices (with an auxiliary score and binary form, for a model that trains them)."""
        return cls(y=np.asarray(y), n_classes=int(n_classes), ordinal=ordinal,
                   score=None if score is None else np.asarray(score, float),
                   binary=None if binary is None else np.asarray(binary, float))

    @classmethod
    def scores(cls, score: np.ndarray) -> Targets:
        """A score to regress."""
        return cls(score=np.asarray(score, float))

    @classmethod
    def multilabel(cls, labels: np.ndarray, continuous: np.ndarray | None = None,
                   distribution: np.ndarray | None = None, mixture: dict[str, Any] | None = None) -> Targets:
        """0/1 labels (NaN: unknown), optionally with continuous values and distributions."""
        return cls(labels=np.asarray(labels, float), continuous=None if continuous is None else np.asarray(
            continuous, float), distribution=None if distribution is None else np.asarray(distribution, float),
            mixture=mixture)

    @property
    def task(self) -> Task:
        """The main head's task: classification (classes), multilabel (labels) or regression (a score)."""
        if self.y is not None:
            return "classification"
        if self.labels is not None:
            return "multilabel"
        if self.score is not None:
            return "regression"
        raise ValueError("targets without any head (give classes, scores or labels)")

    @property
    def main(self) -> tuple[np.ndarray, Task, int]:
        """(the main head's values, its task, its size): class indices and the number of classes,
        a score and 1, or labels and their number."""
        task = self.task
        if task == "classification":
            return self.y, task, self.n_classes
        if task == "multilabel":
            return self.labels, task, int(self.labels.shape[1])
        return self.score, task, 1

    @property
    def heads(self) -> list[Head]:
        """The heads these targets hold, main first."""
        out = []
        if self.y is not None:
            out.append(Head("ordinal" if self.ordinal else "classes", self.n_classes))
        if self.labels is not None:
            out.append(Head("multilabel", int(self.labels.shape[1])))
        if self.score is not None:
            out.append(Head("score", 1))
        if self.binary is not None:
            out.append(Head("binary", 1))
        if self.continuous is not None:
            out.append(Head("continuous", int(self.continuous.shape[1])))
        if self.distribution is not None:
            out.append(Head("distribution", int(self.distribution.shape[1])))
        return out

    def auxiliary(self, kinds: Iterable[str]) -> dict[str, np.ndarray]:
        """The auxiliary heads (score, binary next to classes) among `kinds`, by kind."""
        if self.y is None:
            return {}
        out = {}
        if "score" in kinds and self.score is not None:
            out["score"] = self.score
        if "binary" in kinds and self.binary is not None:
            out["binary"] = self.binary
        return out

    def __len__(self) -> int:
        return len(self.main[0])

    def rows(self, idx: np.ndarray) -> Targets:
        """The targets of rows `idx`."""
        def take(a):
            return None if a is None else a[idx]

        return replace(self, y=take(self.y), score=take(self.score), binary=take(self.binary),
                       labels=take(self.labels), continuous=take(self.continuous),
                       distribution=take(self.distribution))
