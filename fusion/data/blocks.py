"""Model inputs from the feature store: one block per modality, aligned on the labels' samples.

A modality is one or more feature sets of the extract config. Pooled inputs (`pool: [mean,
std]`) give one row per sample; a sample without the modality keeps an all-NaN row, which
the models treat as missing. Sequence inputs (`pool: sequence`) give `SequenceBlock`s of the
samples' segments (`fusion.data.sequences`). `select_target` then keeps the samples a target
can use — the one place where that choice is made, for training, the final model and the
published-protocol baselines alike.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.align import Segmenter
from features.registry import build_extractor
from features.runner import feature_set_key
from features.store import FeatureSetKey, FeatureStore
from fusion.config.schema import ConfigError, ExtractConfig, InputSpec, TargetSpec, TrainConfig
from fusion.data.sequences import Block, available, sequence_blocks
from fusion.datasets.base import DatasetAdapter, build_dataset


def feature_key(extract: ExtractConfig, name: str) -> FeatureSetKey:
    """Store key of the feature set called `name` in an extract config."""
    if name not in extract.features:
        raise ConfigError(f"no feature set {name!r} in the extract config "
                          f"(it defines: {', '.join(extract.features)})")
    spec = extract.features[name]
    extractor = build_extractor(spec.extractor.name, spec.extractor.params)
    return feature_set_key(extract.dataset.store_id, extractor, Segmenter(spec.segmentation))


def pool_rows(frame: pd.DataFrame, stats: list[str], prefix: str) -> pd.DataFrame:
    """Pool a feature set's rows (turns, frames) to one row per sample."""
    grouped = frame.groupby(level="sample_id", sort=True)
    parts = []
    for stat in stats:
        pooled = grouped.std(ddof=0) if stat == "std" else getattr(grouped, stat)()
        if len(stats) > 1 or frame.index.get_level_values(0).duplicated().any():
            pooled = pooled.add_suffix(f"__{stat}")
        parts.append(pooled.add_prefix(f"{prefix}/"))
    return pd.concat(parts, axis=1)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(path.read_bytes())
    return h.hexdigest()


def read_input(store: FeatureStore, extract: ExtractConfig, inp: InputSpec) -> tuple[pd.DataFrame, dict]:
    """A feature set's rows (columns selected, names prefixed with the feature set) and its
    provenance (path, parameter hash, file digest)."""
    key = feature_key(extract, inp.features)
    path = store.path(key)
    if not path.exists():
        raise FileNotFoundError(f"feature set {inp.features!r} ({path}) has not been extracted yet; run "
                                f"`fusion extract` with the same extract config first")
    frame = store.read(key)
    if inp.columns:
        keep = [c for c in frame.columns if any(fnmatch.fnmatchcase(c, pat) for pat in inp.columns)]
        if not keep:
            raise ConfigError(f"columns {inp.columns} of feature set {inp.features!r} match nothing "
                              f"(its columns start {list(frame.columns[:4])})")
        frame = frame[keep]
    return frame, {"path": str(path), "param_hash": key.param_hash, "file_digest": _digest(path)}


def load_input(store: FeatureStore, extract: ExtractConfig, inp: InputSpec) -> tuple[pd.DataFrame, dict]:
    """A pooled input: one row per sample."""
    frame, provenance = read_input(store, extract, inp)
    return pool_rows(frame, inp.pool, inp.features), provenance


@dataclass
class ModelData:
    """What `fusion train` reads: the dataset, its labels, one block per modality aligned on the
    labels' rows, each block's column names, the feature sets' provenance and notes."""

    dataset: DatasetAdapter
    labels: pd.DataFrame
    blocks: dict[str, Block]
    columns: dict[str, list[str]]
    provenance: dict[str, dict]
    notes: list[str]


def load_model_data(cfg: TrainConfig, sequence_ok: bool = True) -> ModelData:
    """Labels and the configured modalities from the feature store.

    Raises:
        ConfigError: no extract section, an unknown feature set, a modality mixing pooled and
            sequence inputs, or sequence inputs for a model that takes only pooled blocks.
        FileNotFoundError: a feature set not extracted yet.
    """
    if cfg.extract is None:
        raise ConfigError("train config has no `extract` section (or file) telling where the features are")
    dataset = build_dataset(cfg.extract.dataset)
    labels = dataset.labels()
    store = FeatureStore(cfg.extract.store)
    blocks: dict[str, Block] = {}
    columns: dict[str, list[str]] = {}
    provenance: dict[str, dict] = {}
    seq_frames: dict[str, pd.DataFrame] = {}
    max_len: dict[str, int | None] = {}
    for modality, inputs in cfg.modalities.items():
        kinds = {inp.is_sequence for inp in inputs}
        if len(kinds) > 1:
            raise ConfigError(f"modality {modality!r} mixes pooled and `pool: sequence` inputs; a modality "
                              "is either one row per sample or a sequence of segments")
        if kinds == {True}:
            if not sequence_ok:
                raise ConfigError(f"model {cfg.model.name!r} takes pooled inputs only, but modality {modality!r} "
                                  "is configured with `pool: sequence`")
            parts = []
            for inp in inputs:
                frame, provenance[inp.features] = read_input(store, cfg.extract, inp)
                parts.append(frame.add_prefix(f"{inp.features}/"))
            seq_frames[modality] = pd.concat(parts, axis=1, join="outer")
            max_len[modality] = min((i.max_len for i in inputs if i.max_len), default=None)
            columns[modality] = [str(c) for c in seq_frames[modality].columns]
            continue
        parts = []
        for inp in inputs:
            pooled, provenance[inp.features] = load_input(store, cfg.extract, inp)
            parts.append(pooled)
        frame = pd.concat(parts, axis=1, join="outer").reindex(labels.index)
        blocks[modality] = frame.to_numpy(dtype=np.float64)
        columns[modality] = [str(c) for c in frame.columns]
    notes: list[str] = []
    if seq_frames:
        seqs, notes = sequence_blocks(seq_frames, list(labels.index), max_len)
        blocks.update(seqs)
    blocks = {m: blocks[m] for m in cfg.modalities}
    return ModelData(dataset, labels, blocks, columns, provenance, notes)


@dataclass
class TargetData:
    """One target's samples: labels `y`, subjects, official splits, blocks, optional scores."""

    name: str
    spec: TargetSpec
    index: pd.Index
    y: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    blocks: dict[str, Block]
    score: np.ndarray | None
    excluded_no_features: list[str]


def select_target(name: str, spec: TargetSpec, labels: pd.DataFrame, blocks: Mapping[str, Block],
                  dataset_name: str = "the dataset") -> TargetData:
    """The samples that have the target's label and at least one modality.

    Raises:
        ConfigError: the label or score is not a label of the dataset, or a label is not a
            class index 0..n_classes-1.
    """
    if spec.label not in labels.columns:
        raise ConfigError(f"target {name}: label {spec.label!r} is not a label of {dataset_name}; labels "
                          f"are: {', '.join(labels.columns.drop(['subject_id', 'split'], errors='ignore'))}")
    labelled = labels[spec.label].notna().to_numpy()
    any_modality = np.column_stack([available(b) for b in blocks.values()]).any(1)
    keep = labelled & any_modality
    lab = labels[keep]
    raw = pd.to_numeric(lab[spec.label], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(raw) & (raw == np.round(raw)) & (raw >= 0) & (raw < spec.n_classes)
    if not ok.all():
        bad = sorted({str(v) for v in lab[spec.label][~ok]})
        raise ConfigError(f"target {name}: label {spec.label!r} must take values 0..{spec.n_classes - 1}; "
                          f"found {bad[:10]}")
    score = None
    if spec.score is not None:
        if spec.score not in labels.columns:
            raise ConfigError(f"target {name}: score {spec.score!r} is not a label of {dataset_name}")
        score = pd.to_numeric(lab[spec.score], errors="coerce").to_numpy(dtype=float)
    return TargetData(
        name=name, spec=spec, index=lab.index, y=raw.astype(int),
        groups=lab["subject_id"].astype(str).to_numpy(), splits=lab["split"].to_numpy(),
        blocks={m: b[keep] for m, b in blocks.items()}, score=score,
        excluded_no_features=sorted(labels.index[labelled & ~any_modality]))


def provenance_tags(provenance: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Feature-store hashes as tracking tags."""
    tags = {f"features.{k}.param_hash": v["param_hash"] for k, v in provenance.items()}
    tags.update({f"features.{k}.file_digest": v["file_digest"] for k, v in provenance.items()})
    return tags
