"""Cross-validation of a fusion model with everything a reviewer asks for.

For each outer fold (subject-grouped, repeated over seeds) the model is fitted on the training
part only — whatever it fits on held-out data (calibration, a fusion layer, early stopping)
on inner-validation data of that part — and then scored on the test part: the model itself,
each modality subset (ablation), its baselines (e.g. early fusion for late fusion), the
uncalibrated model, the model with each modality dropped or noised (robustness), an optional
regression head, and per-prediction attributions. Models are known only through the
`FusionModel` contract (`fusion.models.base`). Metrics
are computed per repeat on the out-of-fold predictions, then reported as mean ± sd over
repeats with a subject-level bootstrap interval.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion.data.sequences import Block, SequenceBlock, add_noise, available, block_shape, feature_sd
from fusion.evaluation.metrics import (
    bootstrap_ci,
    bootstrap_intervals,
    confusion,
    f1_scores,
    mean_sd,
    multiclass_metrics,
    net_benefit,
    per_class_metrics,
    regression_metrics,
)
from fusion.evaluation.progress import steps
from fusion.evaluation.splits import Fold
from fusion.models.base import MODELS, FusionModel
from fusion.models.targets import Targets

CI_METRICS = ("accuracy", "balanced_accuracy", "uar", "f1_weighted", "f1_macro", "qwk", "auc_ovr", "ece",
              "brier")


@dataclass
class TargetResult:
    """Out-of-fold predictions of every variant and condition, and their metrics.

    `ablation` names the ablation variants: variant → (fusion, modalities), where fusion is the
    model's tag or a baseline's.
    """

    n_classes: int
    variants: dict[str, np.ndarray]            # name → (repeats, n, K) probabilities
    regression: np.ndarray | None               # (repeats, n) predicted scores
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_fold: list[dict[str, Any]] = field(default_factory=list)
    modality_contrib: np.ndarray | None = None  # (n, modalities), repeat 0
    windows: np.ndarray | None = None           # (repeats, n, T, K) per-window probabilities, if any
    feature_contrib: dict[str, np.ndarray] = field(default_factory=dict)  # modality → (n, features)
    permutation: dict[str, list[np.ndarray]] = field(default_factory=dict)  # modality → per-fold importances
    fitted: list[dict[str, Any]] = field(default_factory=list)
    ablation: dict[str, tuple[str, str]] = field(default_factory=dict)
    kind: str = "ordinal"
    per_class: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # stat → mean, sd per class
    confusion: np.ndarray | None = None         # (K, K) counts, true × predicted, mean over repeats


@dataclass(frozen=True)
class ModelSpec:
    """A registered fusion model by name, with its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> FusionModel:
        return MODELS.get(self.name)(**self.params)


def targets_of(target) -> Targets:
    """A selected target (`fusion.data.blocks.TargetData`) as the targets a model is fitted on:
    its classes, with the score and the binary form (classes from `positive_from` up) that a
    model training auxiliary heads uses."""
    spec = target.spec
    binary = (target.y >= spec.positive_from).astype(float) if spec.positive_from is not None else None
    return Targets.classes(target.y, spec.n_classes, ordinal=spec.kind == "ordinal", score=target.score,
                           binary=binary)


def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, r)]


def local_inner(fold: Fold, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds re-indexed to positions within the fold's training rows."""
    pos = np.full(n, -1)
    pos[fold.train] = np.arange(len(fold.train))
    return [(pos[a], pos[b]) for a, b in fold.inner]


def noisy(X: Block, level: float, sd: np.ndarray, rng: np.random.Generator) -> Block:
    """`X` plus Gaussian noise of `level` training standard deviations per feature."""
    return add_noise(X, rng.normal(0, 1, block_shape(X)) * level * sd)


def rows(blocks: Mapping[str, Block], idx: np.ndarray, modalities: Sequence[str] | None = None) -> dict[str, Block]:
    return {m: blocks[m][idx] for m in (modalities or blocks)}


def cross_validate(blocks: Mapping[str, Block], y: np.ndarray, folds: Sequence[Fold], *,
                   model: ModelSpec, n_classes: int, score: np.ndarray | None = None,
                   ablation: bool = False, baselines: Mapping[str, ModelSpec] | None = None,
                   robustness: bool = False, noise_levels: Sequence[float] = (), attributions: bool = False,
                   seed: int = 0, kind: str = "ordinal", positive_from: int | None = None,
                   label: str = "cross-validation") -> TargetResult:
    """Fit and score `model` on every fold; see the module docstring for what is scored. The
    folds' progress is shown under `label` (`fusion.evaluation.progress.steps`).

    Models that train auxiliary targets jointly (`FusionModel.auxiliary`) are given the score
    and the binary target (classes from `positive_from` up); one that trained a score head
    predicts the score itself instead of a separately fitted regression model.

    Ablation scores the model on every subset of modalities — by prediction when the model
    can drop modalities, by a refit on the subset otherwise — and each baseline (the model's
    own `baselines()` plus `baselines`) fitted on all modalities.
    """
    mods = list(blocks)
    n = len(y)
    n_rep = max(f.repeat for f in folds) + 1
    variants: dict[str, np.ndarray] = {}

    def put(name: str, r: int, rows_: np.ndarray, proba: np.ndarray | None) -> None:
        if proba is None:
            return
        if name not in variants:
            variants[name] = np.full((n_rep, n, n_classes), np.nan)
        variants[name][r, rows_] = proba

    regression = np.full((n_rep, n), np.nan) if score is not None else None
    result = TargetResult(n_classes, variants, regression, kind=kind)
    rng = np.random.default_rng(seed)
    if attributions:
        result.modality_contrib = np.full((n, len(mods)), np.nan)
    binary = (y >= positive_from).astype(float) if positive_from is not None else None
    targets = Targets.classes(y, n_classes, ordinal=kind == "ordinal", score=score, binary=binary)
    with steps(len(folds), label) as tick:
        for fold in folds:
            tr, te, r = fold.train, fold.test, fold.repeat
            inner = local_inner(fold, n)
            btr, bte = rows(blocks, tr), rows(blocks, te)
            built = model.build()
            fitted = built.fit(btr, targets.rows(tr), inner=inner, seed=fold.seed)
            put("model", r, te, fitted.predict_proba(bte))
            put("uncalibrated", r, te, fitted.uncalibrated_proba(bte))
            per_window = fitted.window_proba(bte)
            if per_window is not None:
                if result.windows is None:
                    result.windows = np.full((n_rep, n, *per_window.shape[1:]), np.nan)
                result.windows[r, te] = per_window
            if ablation:
                for sub in subsets(mods):
                    name = f"{fitted.tag}:{'+'.join(sub)}"
                    result.ablation[name] = (fitted.tag, "+".join(sub))
                    if fitted.drops_modalities:
                        put(name, r, te, fitted.predict_proba(bte, sub))
                    elif len(sub) == len(mods):
                        put(name, r, te, variants["model"][r, te])
                    else:
                        sub_model = model.build()
                        sub_model.fit(rows(btr, np.arange(len(tr)), sub), targets.rows(tr), inner=inner,
                                      seed=fold.seed)
                        put(name, r, te, sub_model.predict_proba(rows(bte, np.arange(len(te)), sub)))
                for tag, spec in {**{k: ModelSpec(*v) for k, v in fitted.baselines().items()},
                                  **(baselines or {})}.items():
                    name = f"{tag}:{'+'.join(mods)}"
                    result.ablation[name] = (tag, "+".join(mods))
                    base = spec.build()
                    base.fit(btr, targets.rows(tr), inner=inner, seed=fold.seed)
                    put(name, r, te, base.predict_proba(bte))
            if robustness:
                for m in mods:
                    put(f"drop:{m}", r, te, fitted.predict_proba(bte, [x for x in mods if x != m]))
                    sd = feature_sd(btr[m])
                    for level in noise_levels:
                        noised = {**bte, m: noisy(bte[m], level, sd, rng)}
                        put(f"noise:{m}:{level:g}", r, te, fitted.predict_proba(noised))
            if score is not None and fitted.scores_jointly():
                regression[r, te] = fitted.predict_score(bte)  # the jointly trained score head
            elif score is not None:
                has = ~np.isnan(score[tr])
                reg = model.build().fit(rows(btr, np.flatnonzero(has)), Targets.scores(score[tr][has]),
                                        inner=_restrict(inner, has), seed=fold.seed)
                regression[r, te] = reg.predict(bte)
            if attributions and r == 0:
                contrib = fitted.modality_contributions(bte)
                if contrib is not None:
                    result.modality_contrib[te] = contrib
                pred = fitted.predict_proba(bte).argmax(1)
                for m, c in fitted.feature_contributions(bte).items():
                    if c is None:  # no exact attribution: permutation importance, cohort level only
                        imp = permutation_importance(fitted, bte, y[te], m, rng)
                        result.permutation.setdefault(m, []).append(imp)
                        continue
                    arr = result.feature_contrib.setdefault(m, np.full((n, c.shape[1]), np.nan))
                    arr[te] = c[np.arange(len(te)), :, pred]
            fold_metrics = multiclass_metrics(y[te], variants["model"][r, te], kind)
            result.per_fold.append({"repeat": r, "fold": fold.fold, "n_test": len(te), **fold_metrics})
            result.fitted.append({"repeat": r, "fold": fold.fold, **fitted.summary()})
            tick(f"repeat {r}, fold {fold.fold}")
    return result


def permutation_importance(model: FusionModel, blocks: Mapping[str, Block], y: np.ndarray, modality: str,
                           rng: np.random.Generator) -> np.ndarray:
    """Increase of the fused model's log loss when each feature of `modality` is permuted
    across the test samples (for models without exact attributions); a sequence modality's
    feature is permuted as whole sequences."""
    def log_loss(p):
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-9, 1))))

    base = log_loss(model.predict_proba(blocks))
    X = blocks[modality]
    out = np.empty(block_shape(X)[-1])
    for j in range(len(out)):
        if isinstance(X, SequenceBlock):
            values = X.values.copy()
            values[:, :, j] = values[rng.permutation(len(values)), :, j]
            shuffled = X.with_values(values)
        else:
            shuffled = X.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
        out[j] = log_loss(model.predict_proba({**blocks, modality: shuffled})) - base
    return out


def _restrict(inner, keep: np.ndarray):
    """Inner folds limited to rows where `keep` (re-indexed)."""
    pos = np.full(len(keep), -1)
    pos[keep] = np.arange(keep.sum())
    return [(pos[a][keep[a]], pos[b][keep[b]]) for a, b in inner]


def summarise(result: TargetResult, y: np.ndarray, groups: np.ndarray, score: np.ndarray | None,
              n_bootstrap: int, seed: int) -> None:
    """Metrics per variant: mean ± sd over repeats and a subject-bootstrap 95 % interval."""
    for name, P in result.variants.items():
        scored = ~np.isnan(P[0]).any(1)
        kind = result.kind
        per_rep = [multiclass_metrics(y[scored], P[r, scored], kind) for r in range(len(P))]
        out = {}
        for metric in per_rep[0]:
            mean, sd = mean_sd([m[metric] for m in per_rep])
            out[metric] = {"mean": mean, "sd": sd}
        wanted = CI_METRICS if name in ("model", "uncalibrated") else ("f1_weighted", "uar", "ece")
        cis = bootstrap_intervals(lambda yy, pp, _w=wanted, _k=kind: {
                                      k: v for k, v in multiclass_metrics(yy, pp, _k).items() if k in _w},
                                  y[scored], P[:, scored], groups[scored], n_bootstrap, seed)
        for metric, (lo, hi) in cis.items():
            out[metric].update(ci_low=lo, ci_high=hi)
        if n_bootstrap and name in result.ablation:
            out["f1_weighted_gain_of_model"] = paired_gain(result.variants["model"], P, y, groups,
                                                            n_bootstrap, seed)
        result.metrics[name] = out
        if name == "model":
            k = result.n_classes
            reps = [per_class_metrics(y[scored], P[r, scored].argmax(1), k) for r in range(len(P))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a class never predicted: NaN precision
                result.per_class = {stat: {"mean": np.nanmean([m[stat] for m in reps], axis=0).tolist(),
                                           "sd": (np.nanstd([m[stat] for m in reps], axis=0, ddof=1)
                                                  if len(reps) > 1 else np.zeros(k)).tolist()}
                                    for stat in ("recall", "precision", "f1", "support")}
            result.confusion = np.mean([confusion(y[scored], P[r, scored].argmax(1), k) for r in range(len(P))],
                                       axis=0)
    if result.windows is not None:
        result.metrics["per_window"] = window_metrics(result.windows, y, groups, result.kind, n_bootstrap, seed)
    if result.regression is not None and score is not None:
        R = result.regression
        scored = ~np.isnan(R[0]) & ~np.isnan(score)
        per_rep = [regression_metrics(score[scored], R[r, scored]) for r in range(len(R))]
        cis = bootstrap_intervals(regression_metrics, score[scored], R[:, scored], groups[scored],
                                  n_bootstrap, seed)
        out = {}
        for metric in per_rep[0]:
            mean, sd = mean_sd([m[metric] for m in per_rep])
            out[metric] = {"mean": mean, "sd": sd}
            if metric in cis:
                out[metric].update(ci_low=cis[metric][0], ci_high=cis[metric][1])
        result.metrics["regression"] = out


def window_metrics(W: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, n_bootstrap: int,
                   seed: int) -> dict[str, dict[str, float]]:
    """Metrics over every scored window (each carrying its sample's label), mean ± sd over
    repeats, with intervals from resampling the samples' groups (as for the samples)."""
    present = ~np.isnan(W[0]).any(-1)  # (n, T)
    rows, _ = np.nonzero(present)
    P = W[:, present]  # (repeats, windows, K)
    yw, gw = y[rows], groups[rows]
    per_rep = [multiclass_metrics(yw, P[r], kind) for r in range(len(P))]
    out = {"n_windows": {"mean": float(len(rows)), "sd": 0.0}}
    for metric in per_rep[0]:
        mean, sd = mean_sd([m[metric] for m in per_rep])
        out[metric] = {"mean": mean, "sd": sd}
    wanted = ("f1_macro", "uar", "accuracy")
    cis = bootstrap_intervals(lambda yy, pp: {k: v for k, v in multiclass_metrics(yy, pp, kind).items()
                                              if k in wanted}, yw, P, gw, n_bootstrap, seed)
    for metric, (lo, hi) in cis.items():
        out[metric].update(ci_low=lo, ci_high=hi)
    return out


def paired_gain(P_model: np.ndarray, P_other: np.ndarray, y: np.ndarray, groups: np.ndarray,
                n_bootstrap: int, seed: int) -> dict[str, float]:
    """Weighted-F1 of the model minus that of another variant on the same samples: mean ± sd
    over repeats and a paired subject-bootstrap interval (both resampled together)."""
    k = P_model.shape[2]
    scored = ~np.isnan(P_model[0]).any(1) & ~np.isnan(P_other[0]).any(1)

    def gain(yy, pp):
        return f1_scores(yy, pp[:, :k].argmax(1), k)[0] - f1_scores(yy, pp[:, k:].argmax(1), k)[0]

    both = np.concatenate([P_model, P_other], axis=2)[:, scored]
    per_rep = [gain(y[scored], both[r]) for r in range(len(both))]
    mean, sd = mean_sd(per_rep)
    lo, hi = bootstrap_ci(gain, y[scored], both, groups[scored], n_bootstrap, seed)
    return {"mean": mean, "sd": sd, "ci_low": lo, "ci_high": hi}


def decision_curve(result: TargetResult, y: np.ndarray, positive_from: int,
                   thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Net benefit of the model (mean over repeats) for 'class ≥ positive_from'."""
    thresholds = np.linspace(0.02, 0.8, 40) if thresholds is None else thresholds
    P = result.variants["model"]
    scored = ~np.isnan(P[0]).any(1)
    positive = y[scored] >= positive_from
    curves = [net_benefit(positive, P[r, scored][:, positive_from:].sum(1), thresholds) for r in range(len(P))]
    out = dict(curves[0])
    out["model"] = np.mean([c["model"] for c in curves], axis=0)
    out["model_sd"] = np.std([c["model"] for c in curves], axis=0)
    return out


def modality_availability(blocks: Mapping[str, Block]) -> dict[str, int]:
    return {m: int(available(X).sum()) for m, X in blocks.items()}
