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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.align import Segmenter
from features.registry import build_extractor
from features.runner import feature_set_key
from features.store import FeatureSetKey, FeatureStore, StoreError
from fusion.config.schema import ConfigError, ExtractConfig, InputSpec, TargetSpec, TrainConfig
from fusion.data.sequences import Block, SequenceBlock, available, sequence_blocks
from fusion.datasets.base import DatasetAdapter, build_dataset, group_column


def feature_key(extract: ExtractConfig, name: str) -> FeatureSetKey:
    """Store key of the feature set called `name` in an extract config."""
    if name not in extract.features:
        raise ConfigError(f"no feature set {name!r} in the extract config "
                          f"(it defines: {', '.join(extract.features)})")
    spec = extract.features[name]
    extractor = build_extractor(spec.extractor.name, spec.extractor.params)
    return feature_set_key(extract.dataset.store_id, extractor, Segmenter(spec.segmentation), name)


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
    path = store.locate(key)
    if not path.exists():
        raise FileNotFoundError(f"feature set {inp.features!r} ({path}) has not been extracted yet; run "
                                f"`fusion extract` with the same extract config first")
    meta = store.read_metadata(path)  # names a damaged or foreign file before its rows are used
    if meta["param_hash"] != key.param_hash:
        raise StoreError(f"{path}: holds features of parameter hash {meta['param_hash'][:16]}, not "
                         f"{key.param_hash[:16]} as its name says (a file copied or renamed by hand); delete it "
                         "and run `fusion extract` again")
    frame = store.read(path)
    if inp.columns:
        keep = [c for c in frame.columns if any(fnmatch.fnmatchcase(c, pat) for pat in inp.columns)]
        if not keep:
            raise ConfigError(f"columns {inp.columns} of feature set {inp.features!r} match nothing "
                              f"(its columns start {list(frame.columns[:4])})")
        frame = frame[keep]
    check_finite(frame, inp.features, path)
    return frame, {"path": str(path), "param_hash": key.param_hash, "file_digest": _digest(path)}


def check_finite(frame: pd.DataFrame, name: str, path: Path) -> None:
    """Refuse infinite feature values (NaN marks a missing value; an infinity is a fault of the
    extraction, which no model can use).

    Raises:
        ConfigError: naming the feature set, its file, the columns and the samples.
    """
    X = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(X)
    if not inf.any():
        return
    cols = frame.columns[inf.any(0)]
    samples = pd.unique(frame.index.get_level_values(0)[inf.any(1)])
    raise ConfigError(f"feature set {name!r} ({path}) holds infinite values in {len(cols)} column(s) "
                      f"({', '.join(map(str, cols[:5]))}{' …' if len(cols) > 5 else ''}) of {len(samples)} sample(s) "
                      f"({', '.join(map(str, samples[:5]))}{' …' if len(samples) > 5 else ''}); re-extract those "
                      "samples, or leave the columns out (`columns:` of the input)")


def speaker_normalise(frame: pd.DataFrame, subjects: pd.Series, min_rows: int, what: str) -> pd.DataFrame:
    """Z-score every column within each subject, from all that subject's rows (no labels).

    Args:
        frame: rows indexed by (sample_id, start, end); rows of samples not in `subjects` are
            dropped.
        subjects: subject of each sample_id.

    Raises:
        ConfigError: naming the subjects with fewer than `min_rows` rows.
    """
    sample = frame.index.get_level_values(0)
    who = pd.Series(sample, index=frame.index).map(subjects)
    frame = frame[who.notna().to_numpy()]
    who = who[who.notna()].to_numpy()
    counts = pd.Series(who).value_counts()
    few = counts[counts < min_rows]
    if len(few):
        raise ConfigError(f"{what}: speaker normalisation needs at least {min_rows} rows per speaker; "
                          f"{len(few)} speaker(s) have fewer, e.g. "
                          f"{', '.join(f'{s} ({n})' for s, n in few.head(5).items())} "
                          "(lower speaker_min_rows, or do not normalise this input)")
    X = frame.to_numpy(dtype=np.float64, copy=True)
    for subject in counts.index:
        rows = who == subject
        part = X[rows]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN
            mean, sd = np.nanmean(part, axis=0), np.nanstd(part, axis=0)
        X[rows] = (part - mean) / np.where(sd > 0, sd, 1.0)
    return pd.DataFrame(X, index=frame.index, columns=frame.columns)


def require_groups(labels: pd.DataFrame, what: str, option: str) -> None:
    """Refuse `option` (context, dialogue) for a dataset without groups of consecutive samples."""
    if "group" not in labels.columns or labels["group"].isna().all():
        raise ConfigError(f"{what}: {option} needs groups of consecutive samples (MELD dialogues, a folder "
                          "dataset's `group` column); this dataset has none")


def dialogue_context(pooled: pd.DataFrame, labels: pd.DataFrame, k: int, what: str) -> pd.DataFrame:
    """For each sample, the mean of the previous `k` samples of its group (labels' `group`, in
    the labels' order) that have features; NaN for a group's first sample.

    Raises:
        ConfigError: when the dataset has no grouping.
    """
    require_groups(labels, what, "context")
    X = pooled.reindex(labels.index).to_numpy(dtype=np.float64)
    has = ~np.isnan(X).all(axis=1)
    out = np.full_like(X, np.nan)
    for _, pos in pd.Series(np.arange(len(labels)), index=labels.index).groupby(labels["group"].to_numpy(),
                                                                                  sort=False):
        pos = pos.to_numpy()
        for j in range(1, len(pos)):
            prev = pos[max(0, j - k):j]
            prev = prev[has[prev]]
            if len(prev):
                out[pos[j]] = np.nanmean(X[prev], axis=0)
    cols = [f"context{k}:{c}" for c in pooled.columns]
    return pd.DataFrame(out, index=labels.index, columns=cols)


def dialogue_block(pooled: pd.DataFrame, labels: pd.DataFrame, k: int, what: str) -> SequenceBlock:
    """Each sample's group as a sequence of turns: the pooled rows of up to `k` samples before
    and after it (labels' `group`, in the labels' order) with the per-turn speaker columns of
    `features.dialogue` (the speaker is the sample's `subject_id`); segment times are positions
    relative to the sample (0). An utterance without features is not a turn of anyone's
    dialogue (never a zero-filled turn), and its own sample is missing (all NaN).

    Raises:
        ConfigError: when the dataset has no grouping.
    """
    from features.dialogue import TURN_COLUMNS, turn_features

    require_groups(labels, what, "dialogue")
    X = pooled.reindex(labels.index).to_numpy(dtype=np.float64)
    has = ~np.isnan(X).all(axis=1)
    speakers = labels["subject_id"].astype(str).to_numpy()
    n, d, width = len(labels), X.shape[1], 2 * k + 1
    positions = pd.Series(np.arange(n), index=labels.index).groupby(labels["group"].to_numpy(), sort=False)
    longest = min(width, max(len(p) for _, p in positions))
    values = np.full((n, longest, d + len(TURN_COLUMNS)), np.nan)
    starts = np.full((n, longest), np.nan)
    lengths = np.zeros(n, dtype=np.int64)
    for _, pos in positions:
        pos = pos.to_numpy()
        pos = pos[has[pos]]  # the utterances that have features, in order
        for j, row in enumerate(pos):
            lo, hi = max(0, j - k), min(len(pos), j + k + 1)
            window = pos[lo:hi]
            values[row, :len(window), :d] = X[window]
            values[row, :len(window), d:] = turn_features(list(speakers[window]), j - lo)
            starts[row, :len(window)] = np.arange(lo, hi) - j
            lengths[row] = len(window)
    cols = (*(str(c) for c in pooled.columns), *TURN_COLUMNS)
    return SequenceBlock(values, starts, starts + 1.0, lengths, cols)


def prepare_input(store: FeatureStore, extract: ExtractConfig, inp: InputSpec,
                  labels: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A feature set's rows, normalised per speaker when asked."""
    frame, provenance = read_input(store, extract, inp)
    if inp.normalise == "speaker":
        frame = speaker_normalise(frame, labels["subject_id"].astype(str), inp.speaker_min_rows,
                                  f"input {inp.features!r}")
    return frame, provenance


def load_input(store: FeatureStore, extract: ExtractConfig, inp: InputSpec,
               labels: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """A pooled input: one row per sample (normalised per speaker, or the dialogue context,
    when asked; both need the dataset's `labels`)."""
    if labels is None:
        if inp.normalise != "none" or inp.context:
            raise ConfigError(f"input {inp.features!r}: normalise and context need the dataset's labels")
        frame, provenance = read_input(store, extract, inp)
    else:
        frame, provenance = prepare_input(store, extract, inp, labels)
    pooled = pool_rows(frame, inp.pool, inp.features)
    if inp.context:
        pooled = dialogue_context(pooled, labels, inp.context, f"input {inp.features!r}")
    return pooled, provenance


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
        dialogue = [inp for inp in inputs if inp.dialogue]
        if dialogue:
            if len(inputs) > 1:
                raise ConfigError(f"modality {modality!r}: an input with `dialogue` is a modality of its own "
                                  f"(it has {len(inputs)} inputs)")
            if not sequence_ok:
                raise ConfigError(f"model {cfg.model.name!r} takes pooled inputs only, but modality {modality!r} "
                                  "is configured with `dialogue` (a sequence of the dialogue's turns)")
            (inp,) = dialogue
            pooled, provenance[inp.features] = load_input(store, cfg.extract, inp, labels)
            blocks[modality] = dialogue_block(pooled, labels, inp.dialogue, f"input {inp.features!r}")
            columns[modality] = list(blocks[modality].columns)
            continue
        if len(kinds) > 1:
            raise ConfigError(f"modality {modality!r} mixes pooled and `pool: sequence` inputs; a modality "
                              "is either one row per sample or a sequence of segments")
        if kinds == {True}:
            if not sequence_ok:
                raise ConfigError(f"model {cfg.model.name!r} takes pooled inputs only, but modality {modality!r} "
                                  "is configured with `pool: sequence`")
            parts = []
            for inp in inputs:
                frame, provenance[inp.features] = prepare_input(store, cfg.extract, inp, labels)
                parts.append(frame.add_prefix(f"{inp.features}/"))
            seq_frames[modality] = pd.concat(parts, axis=1, join="outer")
            max_len[modality] = min((i.max_len for i in inputs if i.max_len), default=None)
            columns[modality] = [str(c) for c in seq_frames[modality].columns]
            continue
        parts = []
        for inp in inputs:
            pooled, provenance[inp.features] = load_input(store, cfg.extract, inp, labels)
            parts.append(pooled)
        frame = pd.concat(parts, axis=1, join="outer").reindex(labels.index)
        blocks[modality] = frame.to_numpy(dtype=np.float64)
        columns[modality] = [str(c) for c in frame.columns]
    notes: list[str] = []
    if seq_frames:
        seqs, notes = sequence_blocks(seq_frames, list(labels.index), max_len)
        blocks.update(seqs)
    blocks = {m: blocks[m] for m in cfg.modalities}
    for modality, block in blocks.items():
        if not available(block).any():
            sets = ", ".join(f"{i.features!r} ({provenance[i.features]['path']})" for i in cfg.modalities[modality])
            raise ConfigError(f"modality {modality!r} has no features for any sample of {dataset.name}: feature "
                              f"set(s) {sets} hold no rows of the dataset's {len(labels)} samples (every "
                              "sample failed extraction, or the store is of another corpus); a modality without "
                              "samples cannot be fused")
    return ModelData(dataset, labels, blocks, columns, provenance, notes)


@dataclass
class TargetData:
    """One target's samples: labels `y` (class indices), the groups splits keep together, the
    subjects, official splits, blocks, optional scores, and the class names."""

    name: str
    spec: TargetSpec
    index: pd.Index
    y: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    blocks: dict[str, Block]
    score: np.ndarray | None
    excluded_no_features: list[str]
    subjects: np.ndarray | None = None
    group_by: str = "subject"
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.subjects is None:
            self.subjects = self.groups
        if self.classes is None:
            self.classes = self.spec.class_names


def class_indices(name: str, spec: TargetSpec, values: pd.Series) -> np.ndarray:
    """Label values → class indices: by position in `spec.classes` (compared as text, so that
    the codes 1–8 and the names of RAVDESS both work), or the values themselves when they are
    0..n_classes-1.

    Raises:
        ConfigError: naming the values that are not classes of the target.
    """
    if spec.classes is not None:
        text = values.map(lambda v: str(int(v)) if isinstance(v, float) and v == int(v) else str(v))
        lookup = {c: i for i, c in enumerate(spec.classes)}
        idx = text.map(lookup)
        if idx.isna().any():
            bad = text[idx.isna()].value_counts()
            raise ConfigError(f"target {name}: label {spec.label!r} has value(s) "
                              f"{[f'{v} ({n}×)' for v, n in bad.items()][:10]} that are not in its classes "
                              f"{spec.classes}")
        return idx.to_numpy(dtype=int)
    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(raw) & (raw == np.round(raw)) & (raw >= 0) & (raw < spec.n_classes)
    if not ok.all():
        bad_values = values[~ok].value_counts()
        hint = ""
        if pd.to_numeric(values, errors="coerce").isna().any():
            hint = (f"; for text labels list them in order with `classes:` (found "
                    f"{list(map(str, values.value_counts().index[:12]))})")
        raise ConfigError(f"target {name}: label {spec.label!r} must take values 0..{spec.n_classes - 1}; "
                          f"found {sorted(map(str, bad_values.index))[:10]}{hint}")
    return raw.astype(int)


def select_target(name: str, spec: TargetSpec, labels: pd.DataFrame, blocks: Mapping[str, Block],
                  dataset: DatasetAdapter | str = "the dataset", group_by: str = "auto") -> TargetData:
    """The samples that have the target's label and at least one modality, their class
    indices and the groups that splits keep together (`cv.group_by`).

    Raises:
        ConfigError: the label or score is not a label of the dataset, or a label value is not
            a class of the target.
    """
    dataset_name = dataset if isinstance(dataset, str) else dataset.name
    if spec.label not in labels.columns:
        reserved = ["subject_id", "split", "group"]
        raise ConfigError(f"target {name}: label {spec.label!r} is not a label of {dataset_name}; labels "
                          f"are: {', '.join(labels.columns.drop(reserved, errors='ignore'))}")
    labelled = labels[spec.label].notna().to_numpy()
    present = {m: available(b) for m, b in blocks.items()}
    any_modality = np.column_stack(list(present.values())).any(1)
    keep = labelled & any_modality
    if not keep.any():
        raise ConfigError(f"target {name}: no sample of {dataset_name} has both the label {spec.label!r} "
                          f"({int(labelled.sum())} labelled) and features in any modality")
    empty = [m for m, has in present.items() if not has[keep].any()]
    if empty:
        raise ConfigError(f"target {name}: modality {empty[0]!r} has no features for any of the {int(keep.sum())} "
                          f"samples labelled with {spec.label!r}; remove it from `modalities`, or extract its "
                          "features for these samples")
    lab = labels[keep]
    y = class_indices(name, spec, lab[spec.label])
    if len(np.unique(y)) < 2:
        raise ConfigError(f"target {name}: all {len(y)} usable samples have the same {spec.label!r} "
                          f"({lab[spec.label].iloc[0]!r}); a classifier needs samples of at least two classes")
    score = None
    if spec.score is not None:
        if spec.score not in labels.columns:
            raise ConfigError(f"target {name}: score {spec.score!r} is not a label of {dataset_name}")
        score = pd.to_numeric(lab[spec.score], errors="coerce").to_numpy(dtype=float)
    subjects = lab["subject_id"].astype(str).to_numpy()
    groups, resolved = subjects, "subject"
    if not isinstance(dataset, str):
        column, resolved = group_column(dataset, lab, group_by)
        groups = column.to_numpy()
    return TargetData(
        name=name, spec=spec, index=lab.index, y=y, groups=groups, splits=lab["split"].to_numpy(),
        blocks={m: b[keep] for m, b in blocks.items()}, score=score,
        excluded_no_features=sorted(labels.index[labelled & ~any_modality]), subjects=subjects,
        group_by=resolved)


def provenance_tags(provenance: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Feature-store hashes as tracking tags."""
    tags = {f"features.{k}.param_hash": v["param_hash"] for k, v in provenance.items()}
    tags.update({f"features.{k}.file_digest": v["file_digest"] for k, v in provenance.items()})
    return tags
