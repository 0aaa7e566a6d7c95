"""The `nested-cv` protocol: cross-validate a fusion model on cached features, for every target.

It reads the feature store (never extracts; `fusion.data.blocks`), evaluates the configured
model on each target with repeated subject-grouped cross-validation and nested inner folds
(`fusion.evaluation.crossval`), and gives the tables, figures, tracking and the final models'
fitting to `fusion.outputs.write_run`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from fusion.config.schema import ConfigError, TrainConfig
from fusion.data.blocks import ModelData, TargetData, load_model_data, provenance_tags, select_target
from fusion.evaluation.crossval import (
    ConformalSpec,
    ModelSpec,
    TargetResult,
    cross_validate,
    decision_curve,
    modality_availability,
    summarise,
    targets_of,
)
from fusion.evaluation.splits import SplitError, inner_folds, make_folds, rare_classes
from fusion.evaluation.tables import (
    attribution_tables,
    chance_levels,
    conformal_keys,
    conformal_table,
    format_summary,
    metric_keys,
    mlflow_key,
    per_group_table,
    predictions_table,
    tables,
)
from fusion.models.base import MODELS
from fusion.models.targets import Targets
from fusion.persist import save_model
from fusion.protocols.base import PROTOCOLS, Protocol, RunResult
from fusion.tracking import git_info

TURN_LEVEL_WARNING = ("WARNING: cv.scheme turn-level puts samples of one subject on both sides of the "
                      "split. It exists only to demonstrate leakage; its figures are not evidence of "
                      "anything a model learned about the condition.")


@PROTOCOLS.register("nested-cv")
class NestedCV(Protocol):
    """Cross-validation of `cfg.model` on every target, by any split scheme (`cv.scheme`), with
    nested inner folds for whatever the model fits on held-out data (calibration, stacking,
    early stopping, grids); the ablation, robustness, decision curves and attributions the
    config asks for; and the final model fitted on every sample when `evaluation.save_model`."""

    targets = "single"

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if MODELS.get(cfg.model.name).needs_inner and cfg.cv.inner_splits < 2:
            raise ConfigError(f"model {cfg.model.name!r} fits calibration, stacking or early stopping on "
                              "inner-validation data: set cv.inner_splits to 2 or more")
        check_learners_fit_targets(cfg)

    def run(self, cfg: TrainConfig) -> RunResult:
        warnings = [TURN_LEVEL_WARNING] if cfg.cv.scheme == "turn-level" else []
        for w in warnings:
            print(w, file=sys.stderr)
        data = load_model_data(cfg, sequence_ok="sequence" in MODELS.get(cfg.model.name).inputs)
        summary: dict[str, Any] = {"dataset": data.dataset.name, "model": cfg.model.name,
                                   "modalities": list(data.blocks), "cv": cfg.cv.model_dump(),
                                   "feature_sets": data.provenance, "warnings": warnings, "notes": data.notes,
                                   "targets": {}}
        results: dict[str, TargetResult] = {}
        files, figures = {}, []
        for tname, spec in cfg.targets.items():
            target = select_target(tname, spec, data.labels, data.blocks, data.dataset, cfg.cv.group_by)
            note = data.dataset.grouping_note
            if note and target.group_by == data.dataset.group_by and note not in summary["notes"]:
                summary["notes"].append(note)
            rare = rare_classes(target.y, cfg.cv, target.classes)
            if rare:
                summary["notes"].append(f"{tname}: {rare}")
            result = evaluate_target(cfg, target, data)
            if result.conformal is not None and result.conformal.summary:
                summary["notes"] += [f"{tname}: conformal: {n}" for n in result.conformal.summary["notes"]]
            summary["notes"] += [f"{tname}: {n}" for n in result.notes]
            results[tname] = result
            summary["targets"][tname] = target_summary(cfg, target, result)
            files.update(target_tables(cfg, target, result, data.columns))
            if cfg.evaluation.plots:
                from fusion.evaluation import plots

                figures += plots.target_figures(tname, spec, result, target.y,
                                                summary["targets"][tname].get("decision_curve"))
        return RunResult(
            summary, tables=files, figures=figures,
            jsons={"fitted_per_fold": {t: r.fitted for t, r in results.items()}},
            save_models=lambda folder: fit_final_models(cfg, data, folder),
            metrics={k: v for t, ts in summary["targets"].items()
                     for k, v in (metric_keys(t, ts["metrics"]) | conformal_keys(t, ts.get("conformal", {}))).items()},
            steps=[(i, {mlflow_key(f"{t}.fold.{k}"): v for k, v in row.items() if k not in ("repeat", "fold")})
                   for t, r in results.items() for i, row in enumerate(r.per_fold)],
            tags=provenance_tags(data.provenance))

    def format(self, summary: dict[str, Any]) -> str:
        return f"{format_summary(summary)}\noutputs: {summary['outputs']['dir']}"


def check_learners_fit_targets(cfg: TrainConfig) -> None:
    """Refuse a learner that assumes ordered classes (`ordinal`) for a nominal target.

    Raises:
        ConfigError: naming the learner and the target.
    """
    from fusion.models.learners.base import LEARNERS

    def names(value: Any):
        if isinstance(value, dict):
            if isinstance(value.get("name"), str):
                yield value["name"]
            for v in value.values():
                yield from names(v)
        elif isinstance(value, list):
            for v in value:
                yield from names(v)

    ordered = [n for n in names(cfg.model.params) if n in LEARNERS and getattr(LEARNERS.get(n), "ordered", False)]
    nominal = [t for t, spec in cfg.targets.items() if spec.kind == "nominal"]
    if ordered and nominal:
        raise ConfigError(f"learner {ordered[0]!r} assumes ordered classes, but target(s) {nominal} are nominal "
                          "(kind: nominal); use logreg, xgboost or mlp")


def conformal_group_column(cfg: TrainConfig, labels) -> str | None:
    """The labels column whose groups get their own conformal thresholds (`group_by: auto`: one
    named gender or sex, in any case, when the labels have one).

    Raises:
        ConfigError: a configured column the labels do not have.
    """
    wanted = cfg.evaluation.conformal.group_by
    if wanted is None or labels is None:
        return None
    if wanted == "auto":
        return next((c for c in labels.columns if str(c).lower() in ("gender", "sex")), None)
    if wanted not in labels.columns:
        raise ConfigError(f"evaluation.conformal.group_by: no labels column {wanted!r} (columns: "
                          f"{', '.join(map(str, labels.columns))})")
    return wanted


def conformal_spec(cfg: TrainConfig, target: TargetData, data: ModelData | None) -> ConformalSpec | None:
    """What the conformal evaluation of a target computes, from `evaluation.conformal`: its
    scores (all three for an ordinal target under `auto`), its group column's values (decoded
    by the dataset's codebook: DAIC-WOZ's Gender 0 / 1 as female / male) and the score's range
    in the training data (the intervals are clipped to it)."""
    from fusion.datasets.base import codebook_of, decode

    c = cfg.evaluation.conformal
    if not c.enabled:
        return None
    scores = c.scores if c.scores != "auto" else (
        ["lac", "aps", "ordinal"] if target.spec.kind == "ordinal" else ["lac", "aps"])
    column = conformal_group_column(cfg, data.labels if data is not None else None)
    groups = None
    if column is not None:
        book = codebook_of(cfg.extract.dataset) if cfg.extract is not None else {}
        values = data.labels.loc[target.index, column]
        groups = np.array(["unknown" if v != v else decode(book, column, v) for v in values], dtype=object)
    score_range = None
    if target.score is not None and np.isfinite(target.score).any():
        score_range = (float(np.nanmin(target.score)), float(np.nanmax(target.score)))
    return ConformalSpec(alphas=tuple(c.alphas), scores=tuple(scores), groups=groups, group_by=column,
                         randomise=c.randomise, calibration_fold=c.calibration_fold, max_size=c.max_size,
                         score_range=score_range, seed=cfg.cv.seed)


def evaluate_target(cfg: TrainConfig, target: TargetData, data: ModelData | None = None) -> TargetResult:
    """Cross-validate the configured model on one target and summarise its metrics."""
    try:
        folds = make_folds(cfg.cv, target.y, target.groups, target.splits)
    except SplitError as err:
        raise SplitError(f"target {target.name}: {err}") from None
    ev = cfg.evaluation
    result = cross_validate(
        target.blocks, target.y, folds, model=ModelSpec(cfg.model.name, cfg.model.params),
        n_classes=target.spec.n_classes, score=target.score, ablation=ev.ablation,
        baselines={tag: ModelSpec(s.name, s.params) for tag, s in ev.baselines.items()},
        robustness=ev.robustness, noise_levels=ev.noise_levels, attributions=ev.attributions, seed=cfg.cv.seed,
        kind=target.spec.kind, positive_from=target.spec.positive_from,
        conformal=conformal_spec(cfg, target, data), label=f"{cfg.model.name} on {target.name}",
        decision=target.spec.decision)
    summarise(result, target.y, target.groups, target.score, ev.n_bootstrap, cfg.cv.seed)
    return result


def target_summary(cfg: TrainConfig, target: TargetData, result: TargetResult) -> dict[str, Any]:
    """Counts, availability, metrics against chance, the ablation layout and decision curve."""
    k = target.spec.n_classes
    scored = ~np.isnan(result.variants["model"][0]).any(1)
    tsum: dict[str, Any] = {
        "label": target.spec.label, "n_classes": k, "classes": target.classes, "kind": target.spec.kind,
        "n_samples": int(scored.sum()),
        "n_subjects": int(len(np.unique(target.subjects[scored]))), "group_by": target.group_by,
        "n_groups": int(len(np.unique(target.groups[scored]))),
        "class_counts": np.bincount(target.y[scored], minlength=k).tolist(),
        "modality_available": modality_availability(target.blocks),
        "metrics": result.metrics, "chance": chance_levels(target.y[scored], k),
        "per_class": {name: {stat: {"mean": v["mean"][i], "sd": v["sd"][i]} for stat, v in result.per_class.items()}
                      for i, name in enumerate(target.classes)},
        "confusion": result.confusion.tolist() if result.confusion is not None else None,
        "ablation": {v: list(fm) for v, fm in result.ablation.items()},
        "excluded_no_features": target.excluded_no_features,
    }
    if result.conformal is not None and result.conformal.summary is not None:
        tsum["conformal"] = result.conformal.summary
    if cfg.evaluation.decision_curves and target.spec.positive_from is not None:
        dc = decision_curve(result, target.y, target.spec.positive_from)
        tsum["decision_curve"] = {key: v.tolist() for key, v in dc.items()}
    return tsum


def target_tables(cfg: TrainConfig, target: TargetData, result: TargetResult,
                  columns: dict[str, list[str]]) -> dict[str, Any]:
    """Every CSV of one target, by file stem."""
    import pandas as pd

    out = {f"{target.name}_{name}": table for name, table in tables(result, target.classes).items()}
    if cfg.evaluation.decision_curves and target.spec.positive_from is not None:
        out[f"{target.name}_decision_curve"] = pd.DataFrame(
            decision_curve(result, target.y, target.spec.positive_from))
    if cfg.evaluation.attributions:
        for name, table in attribution_tables(result, list(target.index), columns, list(target.blocks)).items():
            out[f"{target.name}_{name}"] = table
    out[f"{target.name}_predictions"] = predictions_table(target, result)
    conformal = conformal_table(target, result)
    if conformal is not None:
        out[f"{target.name}_conformal"] = conformal
    out[f"{target.name}_per_group"] = per_group_table(target, result)
    out[f"{target.name}_folds"] = pd.DataFrame(result.per_fold)
    return out


def input_recipes(cfg: TrainConfig) -> dict[str, list[dict[str, Any]]]:
    """How each modality's inputs are computed from raw data: the feature set's extractor and
    segmentation (from the extract config), its pooling, columns and normalisation."""
    assert cfg.extract is not None
    out = {}
    for modality, inputs in cfg.modalities.items():
        out[modality] = []
        for inp in inputs:
            fs = cfg.extract.features[inp.features]
            out[modality].append({"features": inp.features, "extractor": fs.extractor.model_dump(mode="json"),
                                  "segmentation": fs.segmentation.model_dump(mode="json"),
                                  **inp.model_dump(mode="json", exclude={"features"})})
    return out


REFERENCE = "reference.npz"
QUANTILES = np.arange(101)


def save_reference(blocks: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The training cohort's percentiles 0..100 of every pooled feature (`reference.npz`, one
    (101, d) array per modality; no pickle), against which a report places a participant's
    values. Sequence blocks are described per segment."""
    import io

    from features.files import atomic_write_bytes
    from fusion.data.sequences import SequenceBlock, available

    arrays, counts = {}, {}
    for m, X in blocks.items():
        V = X.values[X.mask] if isinstance(X, SequenceBlock) else X[available(X)]
        counts[m] = int(len(V))
        if len(V):
            arrays[m] = np.nanpercentile(V, QUANTILES, axis=0) if np.isfinite(V).any() else np.full(
                (len(QUANTILES), V.shape[1]), np.nan)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(buf.getvalue(), folder / REFERENCE)
    return {"file": REFERENCE, "rows": counts, "per": {m: "segment" if isinstance(X, SequenceBlock) else "sample"
                                                      for m, X in blocks.items()}}


def training_record(cfg: TrainConfig, data: ModelData, target: TargetData) -> dict[str, Any]:
    """Who the model was trained on, for its model card: dataset, samples, class counts, the
    feature sets' hashes, the protocol, and the commit."""
    k = target.spec.n_classes
    record: dict[str, Any] = {
        "dataset": data.dataset.name, "root": str(cfg.extract.dataset.root) if cfg.extract else None,
        "sample_ids": [str(i) for i in target.index], "n_samples": int(len(target.y)),
        "n_subjects": int(len(np.unique(target.subjects))) if target.subjects is not None else None,
        "class_counts": np.bincount(target.y, minlength=k).tolist(),
        "modality_available": modality_availability(target.blocks),
        "feature_sets": data.provenance, "cv": cfg.cv.model_dump(mode="json"), **git_info()}
    for col in ("Gender", "gender", "sex", "Sex"):
        if col in data.labels.columns:
            values = data.labels.loc[target.index, col]
            record["composition"] = {col: {str(v): int(n) for v, n in values.value_counts(dropna=False).items()}}
            break
    return record


def score_ranges(y: np.ndarray, score: np.ndarray, k: int) -> list[list[float] | None]:
    """Each class's range [min, max] of recorded scores among the training samples (None for a
    class without any), so that a report can say which class a predicted score falls in."""
    out: list[list[float] | None] = []
    for c in range(k):
        v = score[(y == c) & ~np.isnan(score)]
        out.append([float(v.min()), float(v.max())] if len(v) else None)
    return out


def fit_final_models(cfg: TrainConfig, data: ModelData, folder: Path) -> Path:
    """Fit the configured model on every usable sample of each target (its inner folds for
    calibration and stacking drawn from all of them) and save it under `folder/<target>`, with
    the training cohort's feature percentiles (`reference.npz`) and who it was trained on. A
    target with a score gets the score model too (`folder/<target>/score`), unless the model
    predicts the score from a jointly trained head."""
    for tname, spec in cfg.targets.items():
        target = select_target(tname, spec, data.labels, data.blocks, data.dataset, cfg.cv.group_by)
        rows = np.arange(len(target.y))
        inner = (inner_folds(target.y, target.groups, rows, cfg.cv.inner_splits, cfg.cv.seed)
                 if cfg.cv.inner_splits > 1 else [])
        model = ModelSpec(cfg.model.name, cfg.model.params).build()
        model.fit(target.blocks, targets_of(target), inner=inner, seed=cfg.cv.seed)
        model.fit_decision(target.y, spec.decision)
        tdir = folder / tname
        target_info = {"name": tname, "label": spec.label, "classes": target.classes, "kind": spec.kind,
                       "names": spec.names, "positive_from": spec.positive_from,
                       "positive_name": spec.positive_name, "score": spec.score}
        if target.score is not None:
            target_info["score_ranges"] = score_ranges(target.y, target.score, spec.n_classes)
        extra = {"reference": save_reference(target.blocks, tdir), "training": training_record(cfg, data, target)}
        reg = None
        if target.score is not None and not model.scores_jointly():
            has = ~np.isnan(target.score)
            reg = ModelSpec(cfg.model.name, cfg.model.params).build()
            reg.fit({m: b[has] for m, b in target.blocks.items()}, Targets.scores(target.score[has]),
                    inner=inner_folds(target.y[has], target.groups[has], np.arange(int(has.sum())),
                                      cfg.cv.inner_splits, cfg.cv.seed) if cfg.cv.inner_splits > 1 else [],
                    seed=cfg.cv.seed)
            save_model(reg, tdir / "score", data.columns, target={**target_info, "label": spec.score},
                       inputs=input_recipes(cfg))
            extra["score_model"] = "score"
        conformal = final_conformal(cfg, data, target, model, reg)
        if conformal is not None:
            extra["conformal"] = conformal
        save_model(model, tdir, data.columns, target=target_info, inputs=input_recipes(cfg), extra=extra)
    return folder


def final_conformal(cfg: TrainConfig, data: ModelData, target: TargetData, model, reg) -> dict[str, Any] | None:
    """What a report needs for a saved model's conformal sets: the thresholds (per level, score
    and group) from the model's cross-fitted predictions of its own training samples — the
    procedure the evaluation measured — and, with a score model, the intervals' thresholds and
    the score's range. None when the model keeps no such predictions."""
    from fusion.evaluation.conformal import conformity, interval_threshold, thresholds

    spec = conformal_spec(cfg, target, data)
    held = model.held_out() if spec is not None else None
    if held is None:
        return None
    ok = ~np.isnan(held).any(1)
    groups = spec.groups[ok] if spec.groups is not None else None
    codes = {}
    if spec.group_by is not None:
        from fusion.datasets.base import codebook_of, decode

        book = codebook_of(cfg.extract.dataset) if cfg.extract is not None else {}
        for v in data.labels[spec.group_by].dropna().unique():
            text = str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)
            codes[text] = decode(book, spec.group_by, v)
    out: dict[str, Any] = {"group_by": spec.group_by, "codes": codes,
                           "report_alpha": cfg.evaluation.conformal.report_alpha,
                           "sets": [], "intervals": [], "score_range": spec.score_range,
                           "n_calibration": int(ok.sum()), "randomised": False}
    for score in spec.scores:
        scores = conformity(held[ok], target.y[ok], score)
        out["sets"] += [thresholds(scores, alpha, score, groups).to_dict() for alpha in spec.alphas]
    if reg is not None:
        held_score = reg.held_out()
        has = ~np.isnan(target.score)
        if held_score is not None:
            for alpha in spec.alphas:
                q = interval_threshold(target.score[has], held_score, alpha)
                out["intervals"].append({"alpha": alpha, "q": q if np.isfinite(q) else "inf"})
    return out
