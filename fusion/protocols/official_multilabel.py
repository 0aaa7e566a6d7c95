"""The `official-multilabel` protocol: multi-label targets (EMOTIC's 26 categories with valence,
arousal and dominance) on the corpus's official train / val / test split.

Per seed (`cv.seeds`, default `[cv.seed]`) the model is fitted on the training split with
early stopping on the validation split (`cv.val_splits`, or a grouped fifth of the training
images when none is named) and scored once on the test split: per-category average precision
(`fusion.evaluation.multilabel`), mAP, VAD mean absolute error, and F1 at the per-category
thresholds chosen on validation where precision equals recall; with `vad_mixture` on the
target, the VAD-mixture distributions over emotions (`fusion.datasets.vad_mixture`) are a third
head, scored by the mean Jensen–Shannon divergence (bits) and KL(label ‖ prediction) on test,
next to the distribution of the predicted VAD and the training rows' mean distribution.
Figures are mean ± sd over
seeds with a 95 % interval over the test split's groups (EMOTIC: images; the bootstrap's width
centred on the estimate, since resampling biases AP), next to the chance AP of random scores.
With `evaluation.ablation`, each stream alone is fitted and scored
the same way (the body-only ablation of Kosti et al.).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np
import pandas as pd

from fusion.config.schema import ConfigError, TargetSpec, TrainConfig
from fusion.data.blocks import load_model_data, provenance_tags
from fusion.data.sequences import available
from fusion.evaluation.metrics import bootstrap_intervals, mean_sd
from fusion.evaluation.multilabel import (
    chance_ap,
    js_divergence,
    kl_divergence,
    per_category_ap,
    thresholded_f1,
    vad_mae,
)
from fusion.evaluation.progress import steps
from fusion.evaluation.splits import inner_folds
from fusion.protocols.base import PROTOCOLS, Protocol, RunResult


def label_columns(name: str, spec: TargetSpec, labels: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The 0/1 label columns matching `spec.label` and the continuous columns.

    Raises:
        ConfigError: no column matches, or a continuous label is not a label of the dataset.
    """
    cols = [c for c in labels.columns if fnmatch.fnmatchcase(str(c), spec.label)]
    if not cols:
        raise ConfigError(f"target {name}: no label column matches {spec.label!r}; labels are "
                          f"{', '.join(map(str, labels.columns))}")
    cont = list(spec.continuous or [])
    missing = [c for c in cont if c not in labels.columns]
    if missing:
        raise ConfigError(f"target {name}: continuous label(s) {missing} are not labels of the dataset")
    return cols, cont


def split_rows(cfg: TrainConfig, labels: pd.DataFrame, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of train, val and test (official splits; val from `cv.val_splits` or a
    grouped fifth of the training groups).

    Raises:
        ConfigError: a protocol other than `official`, or an empty split.
    """
    cv = cfg.cv
    if cv.scheme != "official":
        raise ConfigError(f"multi-label targets are evaluated on the corpus's official split (cv.scheme: official), "
                          f"not {cv.scheme!r}")
    split = labels["split"].astype(str).to_numpy()
    rows = {"train": np.flatnonzero(keep & np.isin(split, cv.train_splits)),
            "test": np.flatnonzero(keep & np.isin(split, cv.test_splits))}
    if cv.val_splits:
        rows["val"] = np.flatnonzero(keep & np.isin(split, cv.val_splits))
    else:
        tr = rows["train"]
        groups = labels["subject_id"].astype(str).to_numpy()[tr]
        fit, val = inner_folds(np.zeros(len(tr), int), groups, np.arange(len(tr)), 5, cv.seed)[0]
        rows["train"], rows["val"] = tr[fit], tr[val]
    for name, r in rows.items():
        if not len(r):
            raise ConfigError(f"the {name} split is empty (cv.train_splits {cv.train_splits}, cv.val_splits "
                              f"{cv.val_splits}, cv.test_splits {cv.test_splits}; the data's splits are "
                              f"{sorted(set(split))})")
    return rows


def take(data, rows: np.ndarray, streams: list[str]):
    """The rows of the model inputs (embedding blocks, or `ImageRows` for end-to-end models)."""
    from fusion.models.context_finetune import ImageRows

    if isinstance(data, ImageRows):
        return ImageRows([data.samples[i] for i in rows], {s: data.streams[s] for s in streams})
    return {s: data[s][rows] for s in streams}


def image_inputs(cfg: TrainConfig):
    """Labels, the dataset and `ImageRows` of every sample for a model trained on the images
    themselves: each modality's crop is its (first) feature set's `image` extractor recipe.

    Raises:
        ConfigError: a modality whose feature set is not made by the `image` extractor.
    """
    from fusion.datasets.base import build_dataset
    from fusion.models.context_finetune import ImageRows

    if cfg.extract is None:
        raise ConfigError("train config has no `extract` section naming the dataset")
    streams = {}
    for modality, inputs in cfg.modalities.items():
        fs = cfg.extract.features[inputs[0].features]
        if fs.extractor.name != "image":
            raise ConfigError(f"modality {modality!r}: an end-to-end image model needs an `image` feature set, "
                              f"{inputs[0].features!r} is made by {fs.extractor.name!r}")
        streams[modality] = dict(fs.extractor.params)
    dataset = build_dataset(cfg.extract.dataset)
    labels = dataset.labels()
    by_id = {s.sample_id: s for s in dataset.samples()}
    samples = [by_id[i] for i in labels.index]
    has = np.array(["image" in s.media for s in samples])
    return dataset, labels, ImageRows(samples, streams), has, {m: {"recipe": p} for m, p in streams.items()}


def mixture_metrics(M: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Mean JS divergence (bits) and KL(label ‖ prediction) (nats) over rows with both."""
    known = ~np.isnan(M).any(1) & ~np.isnan(pred).any(1)
    return {"js_mixture": float(np.mean(js_divergence(M[known], pred[known]))),
            "kl_mixture": float(np.mean(kl_divergence(M[known], pred[known])))}


def mixture_of_predictions(mixture, Vh: np.ndarray, idx: list[int]) -> np.ndarray:
    """The VAD-mixture distribution of predicted VAD (clipped to the scale first)."""
    X = np.clip(Vh[:, idx], *mixture.scale)
    return mixture(X)


def evaluate(cfg: TrainConfig, blocks, Y: np.ndarray, V: np.ndarray | None,
             rows: dict[str, np.ndarray], groups: np.ndarray, seeds: list[int],
             streams: list[str], cont: list[str], M: np.ndarray | None = None, mixture=None,
             mix_idx: list[int] | None = None) -> dict[str, Any]:
    """Fit on train (early stopping on val) once per seed with `streams`; score on test."""
    from fusion.models.base import MODELS
    from fusion.models.targets import Targets

    def sub(r):
        return take(blocks, r, streams)

    tr, va, te = rows["train"], rows["val"], rows["test"]
    P_all, V_all, M_all, models = [], [], [], []
    with steps(len(seeds), f"{cfg.model.name} on {'+'.join(streams)}", unit="seed") as tick:
        for seed in seeds:
            targets = Targets.multilabel(Y, V, M, None if mixture is None else mixture.to_dict())
            model = MODELS.get(cfg.model.name)(**cfg.model.params).fit(
                sub(tr), targets.rows(tr), val=(sub(va), targets.rows(va)), seed=seed)
            pred = model.predict_heads(sub(te))
            P_all.append(pred["multilabel"])
            V_all.append(pred["continuous"])
            M_all.append(pred["distribution"])
            models.append(model)
            tick(f"seed {seed}")
    P = np.stack(P_all)
    Yt = Y[te]
    aps = np.stack([per_category_ap(Yt, p) for p in P])
    out: dict[str, Any] = {"streams": streams, "P": P, "V": None if V is None else np.stack(V_all),
                           "M": None if M is None else np.stack(M_all), "ap": aps, "models": models}
    m = [float(np.nanmean(a)) for a in aps]
    mean, sd = mean_sd(m)
    n_boot = cfg.evaluation.n_bootstrap
    ci = bootstrap_intervals(lambda yy, ss: {"mAP": float(np.nanmean(per_category_ap(yy, ss)))}, Yt, P,
                             groups[te], n_boot, cfg.cv.seed) if n_boot else {}
    # Resampling test images duplicates positives, which ties them and biases AP upwards (for a
    # random scorer the whole bootstrap distribution lies above the estimate), so the interval is
    # the bootstrap's 95 % width centred on the estimate (a normal interval with the bootstrap's
    # standard error), not its percentiles.
    half = (ci["mAP"][1] - ci["mAP"][0]) / 2 if "mAP" in ci else None
    out["metrics"] = {"mAP": {"mean": mean, "sd": sd, **({"ci_low": mean - half, "ci_high": mean + half}
                                                         if half is not None else {})}}
    if V is not None:
        maes = [vad_mae(V[te], v, cont) for v in out["V"]]
        for name in maes[0]:
            mm, ss = mean_sd([x[name] for x in maes])
            out["metrics"][f"mae_{name}"] = {"mean": mm, "sd": ss}
    if M is not None:
        per_seed = [mixture_metrics(M[te], m) for m in out["M"]]
        via_vad = [mixture_metrics(M[te], mixture_of_predictions(mixture, v, mix_idx)) for v in out["V"]]
        for name in per_seed[0]:
            mm, ss = mean_sd([x[name] for x in per_seed])
            out["metrics"][name] = {"mean": mm, "sd": ss}
            mm, ss = mean_sd([x[name] for x in via_vad])
            out["metrics"][f"{name}_via_vad"] = {"mean": mm, "sd": ss}
    f1 = np.stack([thresholded_f1(Yt, p, mdl.thresholds_) for p, mdl in zip(P, models, strict=True)])
    mm, ss = mean_sd([float(np.nanmean(x)) for x in f1])
    out["metrics"]["f1_at_val_thresholds"] = {"mean": mm, "sd": ss}
    out["f1"] = f1
    return out


@PROTOCOLS.register("official-multilabel")
class OfficialMultilabel(Protocol):
    """Multi-label targets on the official split: fitted once per seed on train, early-stopped and
    thresholded on val, scored once on test (see the module docstring)."""

    targets = "multilabel"

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if cfg.cv.scheme != "official":
            raise ConfigError(f"multi-label targets are evaluated on the corpus's official split (cv.scheme: "
                              f"official), not {cfg.cv.scheme!r}")

    def run(self, cfg: TrainConfig) -> RunResult:
        return run_multilabel(cfg)

    def format(self, summary: dict[str, Any]) -> str:
        return format_multilabel(summary)


def run_multilabel(cfg: TrainConfig) -> RunResult:
    """Evaluate the model on every multi-label target.

    Raises:
        ConfigError: unknown label columns, or empty splits.
    """
    from fusion.models.base import MODELS

    seeds = list(cfg.cv.seeds or [cfg.cv.seed])
    if "images" in MODELS.get(cfg.model.name).inputs:
        dataset, labels, inputs, has_input, provenance = image_inputs(cfg)
        notes: list[str] = []
        feature_columns = None
    else:
        data = load_model_data(cfg, sequence_ok=False)
        dataset, labels, inputs, provenance, notes = data.dataset, data.labels, data.blocks, data.provenance, data.notes
        feature_columns = data.columns
        has_input = np.column_stack([available(b) for b in data.blocks.values()]).any(1)
    streams = list(cfg.modalities)
    summary: dict[str, Any] = {"dataset": dataset.name, "model": cfg.model.name, "modalities": streams,
                               "cv": cfg.cv.model_dump(), "seeds": seeds,
                               "feature_sets": provenance, "notes": notes, "warnings": [], "targets": {}}
    tables: dict[str, pd.DataFrame] = {}
    saved = []
    for tname, spec in cfg.targets.items():
        cols, cont = label_columns(tname, spec, labels)
        Y = labels[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        V = labels[cont].apply(pd.to_numeric, errors="coerce").to_numpy(float) if cont else None
        M, mixture, mix_idx = None, None, None
        if spec.vad_mixture is not None:
            mixture = spec.vad_mixture.build(cont)
            mix_idx = [cont.index(c) for c in (spec.vad_mixture.columns or cont)]
            X = V[:, mix_idx]
            outside = np.flatnonzero(mixture.outside(X))
            if len(outside):
                i = int(outside[0])
                raise ConfigError(f"target {tname}: vad_mixture: sample {labels.index[i]!r} has "
                                  f"{dict(zip(spec.vad_mixture.columns or cont, X[i].tolist(), strict=True))}, "
                                  f"outside vad_mixture.scale {mixture.scale[0]:g}–{mixture.scale[1]:g} "
                                  f"({len(outside)} sample(s) so)")
            M = mixture(X)
        any_stream = has_input
        labelled = ~np.isnan(Y).all(1)
        keep = any_stream & labelled
        rows = split_rows(cfg, labels, keep)
        groups = labels["subject_id"].astype(str).to_numpy()
        full = evaluate(cfg, inputs, Y, V, rows, groups, seeds, streams, cont, M, mixture, mix_idx)
        te = rows["test"]
        chance = chance_ap(Y[te])
        ts: dict[str, Any] = {
            "kind": "multilabel", "labels": cols, "continuous": cont,
            "n_train": int(len(rows["train"])), "n_val": int(len(rows["val"])), "n_test": int(len(te)),
            "excluded_no_features": sorted(map(str, labels.index[labelled & ~any_stream])),
            "metrics": {"model": full["metrics"],
                        "chance": {"mAP": {"mean": float(np.nanmean(chance)), "sd": 0.0}}}}
        if V is not None:
            ts["metrics"]["mean predictor"] = {f"mae_{name}": {
                "mean": float(np.nanmean(np.abs(V[te, j] - np.nanmean(V[rows["train"], j])))), "sd": 0.0}
                for j, name in enumerate(cont)}
        if M is not None:
            prior = np.nanmean(M[rows["train"]], 0)
            ts["vad_mixture"] = mixture.to_dict()
            ts["metrics"]["mean predictor"].update(
                {k: {"mean": v, "sd": 0.0} for k, v in mixture_metrics(M[te], np.tile(prior, (len(te), 1))).items()})
        if cfg.evaluation.ablation and len(streams) > 1:
            for s in streams:
                ts["metrics"][f"only:{s}"] = evaluate(cfg, inputs, Y, V, rows, groups, seeds, [s],
                                                      cont, M, mixture, mix_idx)["metrics"]
        summary["targets"][tname] = ts
        ap, f1 = full["ap"], full["f1"]
        thresholds = np.mean([m.thresholds_ for m in full["models"]], axis=0)
        tables[f"{tname}_per_category"] = pd.DataFrame({
            "category": cols, "test_positives": np.nansum(Y[te], 0).astype(int), "ap_mean": np.nanmean(ap, 0),
            "ap_sd": np.nanstd(ap, 0, ddof=1) if len(ap) > 1 else 0.0, "chance_ap": chance,
            "threshold": thresholds, "f1_at_threshold": np.nanmean(f1, 0)})
        columns: dict[str, Any] = {"sample_id": labels.index[te].astype(str),
                                   "split": labels["split"].iloc[te].to_numpy()}
        for r, seed in enumerate(seeds):
            for j, c in enumerate(cols):
                columns[f"p_{c}_seed{seed}"] = full["P"][r, :, j]
            if V is not None:
                for j, name in enumerate(cont):
                    columns[f"{name}_pred_seed{seed}"] = full["V"][r, :, j]
            if M is not None:
                for j, name in enumerate(mixture.names):
                    columns[f"mix_{name}_seed{seed}"] = full["M"][r, :, j]
        if M is not None:
            for j, name in enumerate(mixture.names):
                columns[f"mix_{name}_label"] = M[te, j]
        tables[f"{tname}_predictions"] = pd.DataFrame(columns)
        if cfg.evaluation.save_model:
            saved.append((tname, full["models"][0], cols, cont))

    def save_models(root):
        from fusion.persist import save_model

        for tname, model, cols, cont in saved:
            save_model(model, root / tname, feature_columns,
                       target={"name": tname, "kind": "multilabel", "labels": cols, "continuous": cont},
                       extra={"feature_sets": provenance, "seed": seeds[0]})

    return RunResult(
        summary, tables=tables, save_models=save_models if saved else None,
        metrics={f"{t}.{v}.{k}.{stat}": val for t, ts in summary["targets"].items()
                 for v, ms in ts["metrics"].items() for k, st in ms.items() for stat, val in st.items()
                 if v == "model" or v.startswith("only:")},
        tags=provenance_tags(provenance) if all("param_hash" in v for v in provenance.values()) else {})


def format_multilabel(summary: dict[str, Any]) -> str:
    """The figures of a multi-label run, as printed by `fusion train`."""
    lines = []
    for tname, ts in summary["targets"].items():
        lines.append(f"{tname}: {len(ts['labels'])} labels, train {ts['n_train']} / val {ts['n_val']} / "
                     f"test {ts['n_test']} (official split; seeds {summary['seeds']})")
        for variant, ms in ts["metrics"].items():
            parts = []
            for k, s in ms.items():
                text = f"{s['mean']:.3f}" + (f" ± {s['sd']:.3f}" if s.get("sd") else "")
                if "ci_low" in s:
                    text += f" [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
                parts.append(f"{k} {text}")
            lines.append(f"  {variant:<16} " + "; ".join(parts))
    lines.append(f"outputs: {summary['outputs']['dir']}")
    return "\n".join(lines)
