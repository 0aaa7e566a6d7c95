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


ALPHA_GRID = tuple(round(a, 2) for a in np.arange(0.05, 0.51, 0.05))  # for the coverage-against-nominal plot


@dataclass(frozen=True)
class ConformalSpec:
    """What the conformal evaluation computes (`fusion.evaluation.conformal`).

    Attributes:
        alphas: the miscoverage levels reported (sets are also computed on `ALPHA_GRID` for
            the coverage plot).
        scores: conformity scores (`lac`, `aps`, `ordinal`).
        groups: each sample's value of the grouping column (Mondrian thresholds), or None.
        randomise: randomised `aps` / `ordinal` scores and sets (seeded); otherwise the
            conservative deterministic ones (never empty).
        calibration_fold: for a model without held-out predictions of its training samples
            (`FusionModel.held_out`), fit one more model per fold without its first inner
            fold and calibrate on that fold; otherwise such a model gets no sets.
        max_size: abstain when a set holds more classes (reported for every size besides).
        score_range: the score's scale, to clip its intervals to.
    """

    alphas: tuple[float, ...] = (0.1, 0.2)
    scores: tuple[str, ...] = ("lac", "aps")
    groups: np.ndarray | None = field(default=None, compare=False)
    group_by: str | None = None
    randomise: bool = False
    calibration_fold: bool = False
    max_size: int | None = None
    score_range: tuple[float, float] | None = None
    seed: int = 0


@dataclass
class ConformalResult:
    """Out-of-fold conformal sets and score intervals, by key "score@alpha" / "alpha"."""

    sets: dict[str, np.ndarray] = field(default_factory=dict)       # (repeats, n, K): 1 in, 0 out, NaN unset
    intervals: dict[str, np.ndarray] = field(default_factory=dict)  # (repeats, n, 2)
    source: set[str] = field(default_factory=set)
    fallback: dict[str, list[int]] = field(default_factory=dict)   # group → its sizes where it fell back
    n_folds: int = 0
    skipped: str | None = None
    spec: ConformalSpec | None = None
    summary: dict[str, Any] | None = None  # `conformal_metrics`, set by `summarise`


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
    conformal: ConformalResult | None = None
    offsets: dict[str, np.ndarray] = field(default_factory=dict)  # variant → (repeats, n, K) its rule's offsets
    notes: list[str] = field(default_factory=list)

    def labels(self, name: str = "model") -> np.ndarray:
        """(repeats, n) the classes a variant names, -1 where unscored: by the decision rule of
        the model that predicted it where it has one (`offsets`), else the most probable class."""
        from fusion.evaluation.decision import decide

        P = self.variants[name]
        off = self.offsets.get(name)
        return np.stack([decide(P[r], None if off is None else off[r]) for r in range(len(P))])


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
                   conformal: ConformalSpec | None = None, label: str = "cross-validation",
                   decision: str = "argmax") -> TargetResult:
    """Fit and score `model` on every fold; see the module docstring for what is scored. The
    folds' progress is shown under `label` (`fusion.evaluation.progress.steps`).

    Models that train auxiliary targets jointly (`FusionModel.auxiliary`) are given the score
    and the binary target (classes from `positive_from` up); one that trained a score head
    predicts the score itself instead of a separately fitted regression model.

    Ablation scores the model on every subset of modalities — by prediction when the model
    can drop modalities, by a refit on the subset otherwise — and each baseline (the model's
    own `baselines()` plus `baselines`) fitted on all modalities.

    `conformal` adds split-conformal prediction sets (and score intervals) for every test
    sample, calibrated on predictions of training samples by models that did not see them
    (`conformal_fold`).

    `decision` (a metric: `f1_weighted`, `f1_macro`, `uar`) fits, in every fold, the fitted
    model's decision rule on its predictions of that fold's training samples
    (`FusionModel.fit_decision`); the model's labels, and its metrics of labels, follow it.
    """
    mods = list(blocks)
    n = len(y)
    n_rep = max(f.repeat for f in folds) + 1
    variants: dict[str, np.ndarray] = {}

    def put(name: str, r: int, rows_: np.ndarray, proba: np.ndarray | None,
            by: FusionModel | None = None) -> None:
        """Store a variant's probabilities, and the decision offsets of the model `by` that
        predicted them (when a rule is configured)."""
        if proba is None:
            return
        if name not in variants:
            variants[name] = np.full((n_rep, n, n_classes), np.nan)
        variants[name][r, rows_] = proba
        offsets = by.decision_offsets() if by is not None and decision != "argmax" else None
        if offsets is not None:
            result.offsets.setdefault(name, np.zeros((n_rep, n, n_classes)))[r, rows_] = offsets

    def ruled(m: FusionModel, tr: np.ndarray, name: str | None = None) -> FusionModel:
        """`m` with its decision rule fitted on its predictions of the training rows `tr`; a
        variant `name` whose model cannot have one is named by its most probable class, and
        said so."""
        if decision == "argmax":
            return m
        try:
            m.fit_decision(y[tr], decision)
        except ValueError as err:
            if name is None:
                raise ValueError(f"{label}: {err} (the target's `decision`: argmax needs no inner predictions)") \
                    from None
            note = f"decision rule: variant {name} is named by its most probable class ({err})"
            if note not in result.notes:
                result.notes.append(note)
        return m

    regression = np.full((n_rep, n), np.nan) if score is not None else None
    result = TargetResult(n_classes, variants, regression, kind=kind)
    rng = np.random.default_rng(seed)
    if attributions:
        result.modality_contrib = np.full((n, len(mods)), np.nan)
    binary = (y >= positive_from).astype(float) if positive_from is not None else None
    targets = Targets.classes(y, n_classes, ordinal=kind == "ordinal", score=score, binary=binary)
    if conformal is not None:
        result.conformal = ConformalResult(spec=conformal)
    with steps(len(folds), label) as tick:
        for fold in folds:
            tr, te, r = fold.train, fold.test, fold.repeat
            inner = local_inner(fold, n)
            btr, bte = rows(blocks, tr), rows(blocks, te)
            built = model.build()
            fitted = ruled(built.fit(btr, targets.rows(tr), inner=inner, seed=fold.seed), tr)
            put("model", r, te, fitted.predict_proba(bte), fitted)
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
                        put(name, r, te, fitted.predict_proba(bte, sub), fitted)
                    elif len(sub) == len(mods):
                        put(name, r, te, variants["model"][r, te], fitted)
                    else:
                        sub_model = model.build()
                        sub_model.fit(rows(btr, np.arange(len(tr)), sub), targets.rows(tr), inner=inner,
                                      seed=fold.seed)
                        put(name, r, te, sub_model.predict_proba(rows(bte, np.arange(len(te)), sub)),
                            ruled(sub_model, tr, name))
                for tag, spec in {**{k: ModelSpec(*v) for k, v in fitted.baselines().items()},
                                  **(baselines or {})}.items():
                    name = f"{tag}:{'+'.join(mods)}"
                    result.ablation[name] = (tag, "+".join(mods))
                    base = spec.build()
                    base.fit(btr, targets.rows(tr), inner=inner, seed=fold.seed)
                    put(name, r, te, base.predict_proba(bte), ruled(base, tr, name))
            if robustness:
                for m in mods:
                    put(f"drop:{m}", r, te, fitted.predict_proba(bte, [x for x in mods if x != m]), fitted)
                    sd = feature_sd(btr[m])
                    for level in noise_levels:
                        noised = {**bte, m: noisy(bte[m], level, sd, rng)}
                        put(f"noise:{m}:{level:g}", r, te, fitted.predict_proba(noised), fitted)
            reg = None
            if score is not None and fitted.scores_jointly():
                regression[r, te] = fitted.predict_score(bte)  # the jointly trained score head
            elif score is not None:
                has = ~np.isnan(score[tr])
                reg = model.build().fit(rows(btr, np.flatnonzero(has)), Targets.scores(score[tr][has]),
                                        inner=_restrict(inner, has), seed=fold.seed)
                regression[r, te] = reg.predict(bte)
                reg = (reg, np.flatnonzero(has))
            if conformal is not None:
                conformal_fold(result.conformal, conformal, fold, fitted, model, btr, bte, targets.rows(tr), inner,
                               n, n_rep, n_classes, reg)
            if attributions and r == 0:
                contrib = fitted.modality_contributions(bte)
                if contrib is not None:
                    result.modality_contrib[te] = contrib
                pred = fitted.predict(bte)
                for m, c in fitted.feature_contributions(bte).items():
                    if c is None:  # no exact attribution: permutation importance, cohort level only
                        imp = permutation_importance(fitted, bte, y[te], m, rng)
                        result.permutation.setdefault(m, []).append(imp)
                        continue
                    arr = result.feature_contrib.setdefault(m, np.full((n, c.shape[1]), np.nan))
                    arr[te] = c[np.arange(len(te)), :, pred]
            fold_metrics = multiclass_metrics(y[te], variants["model"][r, te], kind,
                                              fitted.decision_offsets())
            result.per_fold.append({"repeat": r, "fold": fold.fold, "n_test": len(te), **fold_metrics})
            decided = {"decision": fitted.decision_} if getattr(fitted, "decision_", None) else {}
            result.fitted.append({"repeat": r, "fold": fold.fold, **fitted.summary(), **decided})
            tick(f"repeat {r}, fold {fold.fold}")
    rules = [f["decision"] for f in result.fitted if "decision" in f]
    if rules:
        mean = {key: float(np.mean([d[key] for d in rules])) for key in ("before", "after", "crossfit")}
        result.notes.append(
            f"labels by the decision rule for {decision}: per-class offsets fitted in each fold on the model's "
            f"predictions of {int(np.mean([d['n'] for d in rules]))} training samples it was not fitted on; "
            f"{decision} there {mean['before']:.3f} with the most probable class, {mean['crossfit']:.3f} with the "
            f"rule cross-fitted over those samples ({mean['after']:.3f} in-sample); the probabilities are unchanged")
    return result


def conformal_fold(out: ConformalResult, spec: ConformalSpec, fold: Fold, fitted: FusionModel, model: ModelSpec,
                   btr: Mapping[str, Block], bte: Mapping[str, Block], targets_tr: Targets, inner, n: int,
                   n_rep: int, n_classes: int, reg: tuple[FusionModel, np.ndarray] | None) -> None:
    """Conformal sets (and score intervals) for one fold's test samples.

    The conformity scores come from training samples' predictions by models that did not see
    them: the fitted model's own cross-fitted predictions (`FusionModel.held_out`: late and
    early fusion), whose thresholds then apply to the fitted model's test probabilities; or,
    with `spec.calibration_fold`, a second model fitted without the first inner fold, which
    that fold calibrates and which predicts the test samples itself (split conformal).
    """
    from fusion.evaluation.conformal import (
        conformity,
        interval_threshold,
        prediction_sets,
        score_intervals,
        thresholds,
    )

    tr, te, r = fold.train, fold.test, fold.repeat
    y_tr = np.asarray(targets_tr.y, int)
    held = fitted.held_out()
    sub = None
    if held is not None:
        cal_rows, p_cal, p_test = np.arange(len(tr)), held, fitted.predict_proba(bte)
        out.source.add("the fitted model's cross-fitted predictions of its training samples")
    elif spec.calibration_fold and inner:
        fit_rows, cal_rows = inner[0]
        keep = np.zeros(len(tr), bool)
        keep[fit_rows] = True
        sub = model.build().fit(rows(btr, fit_rows), targets_tr.rows(fit_rows), inner=_restrict(inner[1:], keep),
                                seed=fold.seed)
        p_cal, p_test = sub.predict_proba(rows(btr, cal_rows)), sub.predict_proba(bte)
        out.source.add("a model fitted without the first inner fold, calibrated on that fold")
    else:
        out.skipped = (f"{model.name} keeps no held-out predictions of its training samples; set "
                       "evaluation.conformal.calibration_fold: true to fit one more model per fold for them"
                       if inner else "conformal sets need inner folds (cv.inner_splits ≥ 2)")
        return
    ok = ~np.isnan(p_cal).any(1)
    p_cal, y_cal = p_cal[ok], y_tr[cal_rows][ok]
    g_all = spec.groups
    g_cal = g_all[tr][cal_rows][ok] if g_all is not None else None
    g_te = g_all[te] if g_all is not None else None
    rng = np.random.default_rng([spec.seed, r, fold.fold])
    u_cal = rng.random(len(y_cal)) if spec.randomise else None
    u_te = rng.random(len(te)) if spec.randomise else None
    for score in spec.scores:
        cal_scores = conformity(p_cal, y_cal, score, u_cal)
        for alpha in sorted(set(spec.alphas) | set(ALPHA_GRID)):
            t = thresholds(cal_scores, alpha, score, g_cal)
            key = f"{score}@{alpha:g}"
            if key not in out.sets:
                out.sets[key] = np.full((n_rep, n, n_classes), np.nan)
            out.sets[key][r, te] = prediction_sets(p_test, t.for_groups(g_te, len(te)), score, u_te)
            if alpha == min(spec.alphas) and score == spec.scores[0]:  # the strictest level, once per fold
                for g, size in t.fallback.items():
                    out.fallback.setdefault(g, []).append(size)
    out.n_folds += 1
    # score intervals: held-out score predictions of the training samples
    predicted_cal = predicted_te = None
    if reg is not None:
        reg_model, reg_rows = reg
        held_score = reg_model.held_out()
        if held_score is not None:
            predicted_cal, score_cal = held_score, np.asarray(targets_tr.score)[reg_rows]
            predicted_te = reg_model.predict(bte)
    elif sub is not None and sub.scores_jointly():
        predicted_cal, score_cal = sub.predict_score(rows(btr, cal_rows)), np.asarray(targets_tr.score)[cal_rows]
        predicted_te = sub.predict_score(bte)
    if predicted_cal is not None:
        low, high = spec.score_range if spec.score_range is not None else (None, None)
        for alpha in spec.alphas:
            q = interval_threshold(score_cal, predicted_cal, alpha)
            key = f"{alpha:g}"
            if key not in out.intervals:
                out.intervals[key] = np.full((n_rep, n, 2), np.nan)
            out.intervals[key][r, te] = score_intervals(predicted_te, q, low, high)


def conformal_metrics(res: ConformalResult, spec: ConformalSpec, y: np.ndarray, groups: np.ndarray,
                      score: np.ndarray | None, P: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Coverage, set size and the shares of singleton and empty sets — mean ± sd over repeats
    with a subject-bootstrap interval — per level and score, overall and per group; the
    selective accuracy when abstaining above each set size; score intervals' coverage and
    width; the coverage on the whole `ALPHA_GRID` (for the plot). `P`: the model's
    out-of-fold probabilities, whose most probable class is what abstention decides on."""
    from fusion.evaluation.conformal import selective, set_summary

    def stats(values: list[float], ci: tuple[float, float] | None = None) -> dict[str, float]:
        finite = [v for v in values if np.isfinite(v)]  # e.g. no one decided at that set size
        mean, sd = mean_sd(finite) if finite else (float("nan"), float("nan"))
        out = {"mean": mean, "sd": sd}
        if ci is not None:
            out.update(ci_low=ci[0], ci_high=ci[1])
        return out

    def summary_of(S: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        per_rep = [set_summary(S[r, mask] > 0.5, y[mask]) for r in range(len(S))]
        cis = bootstrap_intervals(lambda yy, ss: set_summary(ss > 0.5, yy), y[mask], S[:, mask], groups[mask],
                                  n_bootstrap, seed)
        return {k: stats([m[k] for m in per_rep], cis.get(k)) for k in per_rep[0]} | {"n": int(mask.sum())}

    k = next(iter(res.sets.values())).shape[2] if res.sets else 0
    out: dict[str, Any] = {"source": sorted(res.source), "group_by": spec.group_by, "randomised": spec.randomise,
                           "alphas": list(spec.alphas), "scores": list(spec.scores), "n_classes": k,
                           "max_size": spec.max_size, "sets": {}, "intervals": {}, "grid": {}, "notes": []}
    if res.skipped:
        out["notes"].append(res.skipped)
    for key, S in res.sets.items():
        name, alpha = key.split("@")
        scored = ~np.isnan(S[0]).any(1)
        per_rep_cov = [set_summary(S[r, scored] > 0.5, y[scored])["coverage"] for r in range(len(S))]
        out["grid"].setdefault(name, {})[alpha] = float(np.mean(per_rep_cov))
        if float(alpha) not in spec.alphas:
            continue
        entry = summary_of(S, scored)
        if spec.groups is not None:
            entry["per_group"] = {str(g): summary_of(S, scored & (spec.groups == g))
                                  for g in sorted(set(spec.groups[scored]))}
        entry["abstention"] = []
        for size in range(1, k):
            sel = [selective(S[r, scored] > 0.5, np.nan_to_num(P[r, scored]), y[scored], size) for r in range(len(S))]
            entry["abstention"].append({"max_size": size, "decided": stats([m["decided"] for m in sel]),
                                        "accuracy": stats([m["accuracy"] for m in sel])})
        out["sets"].setdefault(f"{float(alpha):g}", {})[name] = entry
    if res.fallback:
        from fusion.evaluation.conformal import min_group_size

        low = min(spec.alphas)
        which = ", ".join(f"{g} ({min(v)}–{max(v)} samples, {len(v)} of {res.n_folds} folds)"
                          for g, v in sorted(res.fallback.items()))
        out["notes"].append(f"{spec.group_by} groups with fewer than {min_group_size(low)} calibration samples, "
                            f"too few for a threshold of their own at α = {low:g}: {which}; the marginal threshold "
                            "was used for them there")
    if score is not None:
        for key, iv in res.intervals.items():
            scored = ~np.isnan(iv[0]).any(1) & ~np.isnan(score)
            inside = (score[scored] >= iv[:, scored, 0] - 1e-9) & (score[scored] <= iv[:, scored, 1] + 1e-9)
            cov = [float(c) for c in inside.mean(1)]
            width = [float((iv[r, scored, 1] - iv[r, scored, 0]).mean()) for r in range(len(iv))]
            out["intervals"][key] = {"coverage": stats(cov), "width": stats(width), "n": int(scored.sum())}
    return out


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
    k = result.n_classes
    for name, P in result.variants.items():
        scored = ~np.isnan(P[0]).any(1)
        kind = result.kind
        # a variant's decision offsets travel with its probabilities (resampled together)
        off = result.offsets.get(name)
        PO = P if off is None else np.concatenate([P, off], axis=2)

        def metrics_of(yy, pp, _k=kind, _o=off is not None):
            return multiclass_metrics(yy, pp[:, :k], _k, pp[:, k:] if _o else None)

        per_rep = [metrics_of(y[scored], PO[r, scored]) for r in range(len(P))]
        out = {}
        for metric in per_rep[0]:
            mean, sd = mean_sd([m[metric] for m in per_rep])
            out[metric] = {"mean": mean, "sd": sd}
        wanted = CI_METRICS if name in ("model", "uncalibrated") else ("f1_weighted", "uar", "ece")
        cis = bootstrap_intervals(lambda yy, pp, _w=wanted, _m=metrics_of: {
                                      key: v for key, v in _m(yy, pp).items() if key in _w},
                                  y[scored], PO[:, scored], groups[scored], n_bootstrap, seed)
        for metric, (lo, hi) in cis.items():
            out[metric].update(ci_low=lo, ci_high=hi)
        if n_bootstrap and name in result.ablation:
            out["f1_weighted_gain_of_model"] = paired_gain(result.variants["model"], P, y, groups, n_bootstrap,
                                                            seed, result.offsets.get("model"), off)
        result.metrics[name] = out
        if name == "model":
            labels = result.labels("model")
            reps = [per_class_metrics(y[scored], labels[r, scored], k) for r in range(len(P))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a class never predicted: NaN precision
                result.per_class = {stat: {"mean": np.nanmean([m[stat] for m in reps], axis=0).tolist(),
                                           "sd": (np.nanstd([m[stat] for m in reps], axis=0, ddof=1)
                                                  if len(reps) > 1 else np.zeros(k)).tolist()}
                                    for stat in ("recall", "precision", "f1", "support")}
            result.confusion = np.mean([confusion(y[scored], labels[r, scored], k) for r in range(len(P))],
                                       axis=0)
    if result.conformal is not None and result.conformal.spec is not None:
        result.conformal.summary = conformal_metrics(result.conformal, result.conformal.spec, y, groups, score,
                                                     result.variants["model"], n_bootstrap, seed)
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
                n_bootstrap: int, seed: int, offsets_model: np.ndarray | None = None,
                offsets_other: np.ndarray | None = None) -> dict[str, float]:
    """Weighted-F1 of the model minus that of another variant on the same samples (each one's
    labels by its decision rule's offsets, where it has them): mean ± sd over repeats and a
    paired subject-bootstrap interval (both resampled together)."""
    from fusion.evaluation.decision import decide

    k = P_model.shape[2]
    scored = ~np.isnan(P_model[0]).any(1) & ~np.isnan(P_other[0]).any(1)
    zeros = np.zeros_like(P_model)
    O_model = zeros if offsets_model is None else offsets_model
    O_other = zeros if offsets_other is None else offsets_other

    def gain(yy, pp):
        return (f1_scores(yy, decide(pp[:, :k], pp[:, 2 * k:3 * k]), k)[0]
                - f1_scores(yy, decide(pp[:, k:2 * k], pp[:, 3 * k:]), k)[0])

    both = np.concatenate([P_model, P_other, O_model, O_other], axis=2)[:, scored]
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
