"""`fusion data init FOLDER`: a `folder` dataset from a folder of recordings, without reading
the source — a `labels.csv` skeleton and the extract and train configs, and what to fill in.

Media files (the `folder` adapter's extensions) and plain-text transcripts (`.txt`, read into
the `text` column) are grouped by their path without extension into samples (`clip01.wav` +
`clip01.txt` = sample `clip01`; a file in a subfolder keeps the subfolder in its id,
`actor01/clip01`). Turn-by-turn transcripts (tables with start, stop and text) go in a
`transcript` column by hand. The subject of a sample is
taken from its path by `subject_pattern` (a regular expression; its first group, or the whole
match), by default the first subfolder (a folder per person), and the sample itself when the
files lie flat (then no split can keep a person's recordings together until subjects are filled
in: said so). Nothing is overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from features.files import atomic_write_text
from fusion.datasets.base import DatasetError
from fusion.datasets.folder import EXTENSIONS

TEXTS = (".txt",)


def scan(folder: Path) -> dict[str, dict[str, str]]:
    """Sample id → {role: path relative to `folder`, "text": the words of a `.txt` file}."""
    samples: dict[str, dict[str, str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        suffix = path.suffix.lower()
        role = EXTENSIONS.get(suffix) or ("text" if suffix in TEXTS else None)
        if role is None:
            continue
        rel = path.relative_to(folder)
        sid = rel.with_suffix("").as_posix()
        media = samples.setdefault(sid, {})
        if role in media:
            raise DatasetError(f"{folder}: sample {sid!r} has two {role} files ({rel.as_posix()} and another); "
                               "give them different names")
        if role == "text":
            try:
                media[role] = " ".join(path.read_text(encoding="utf-8").split())
            except UnicodeDecodeError as err:
                raise DatasetError(f"{path}: not UTF-8 text (byte {err.start})") from None
        else:
            media[role] = rel.as_posix()
    return samples


def subject_of(sid: str, pattern: re.Pattern | None) -> str | None:
    if pattern is not None:
        m = pattern.search(sid)
        return (m.group(1) if m.groups() else m.group(0)) if m else None
    return sid.split("/", 1)[0] if "/" in sid else None


def init_folder(folder: str | Path, name: str | None = None, subject_pattern: str | None = None,
                configs: str | Path = "configs", label: str = "label") -> dict[str, Any]:
    """Write `FOLDER/labels.csv` and `configs/extract/<name>.yaml`, `configs/train/<name>.yaml`.

    Returns:
        {"labels", "extract", "train", "n_samples", "n_subjects", "roles", "todo"}.

    Raises:
        DatasetError: no folder, no media in it, a file that exists already, a pattern that is
            not a regular expression or finds no subject in some paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    name = name or folder.resolve().name
    try:
        pattern = re.compile(subject_pattern) if subject_pattern else None
    except re.error as err:
        raise DatasetError(f"--subject-pattern {subject_pattern!r}: not a regular expression ({err})") from None
    samples = scan(folder)
    if not samples:
        raise DatasetError(f"{folder}: no media found (audio {_exts('audio')}, video {_exts('video')}, images "
                           f"{_exts('image')}, text .txt)")
    rows, unmatched = [], []
    for sid, media in samples.items():
        subject = subject_of(sid, pattern)
        if subject is None and pattern is not None:
            unmatched.append(sid)
        rows.append({"sample_id": sid, "subject_id": subject or sid, **media, "split": "", label: ""})
    if unmatched:
        raise DatasetError(f"--subject-pattern {subject_pattern!r} finds no subject in {len(unmatched)} path(s), "
                           f"e.g. {unmatched[:3]}")
    roles = [r for r in ("audio", "video", "image", "text") if any(r in m for m in samples.values())]
    labels_path = folder / "labels.csv"
    extract_path = Path(configs) / "extract" / f"{name}.yaml"
    train_path = Path(configs) / "train" / f"{name}.yaml"
    existing = [str(p) for p in (labels_path, extract_path, train_path) if p.exists()]
    if existing:
        raise DatasetError(f"{', '.join(existing)} exist(s) already; nothing was written (move them, or give "
                           "--name for other config names)")
    table = pd.DataFrame(rows, columns=["sample_id", "subject_id", *roles, "split", label])
    extract, train = configs_for(folder, name, roles, label, extract_path, train_path)
    atomic_write_text(table.to_csv(index=False), labels_path)
    extract_path.parent.mkdir(parents=True, exist_ok=True)
    train_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(extract, extract_path)
    atomic_write_text(train, train_path)
    n_subjects = table["subject_id"].nunique()
    todo = [f"fill the {label!r} column of {labels_path} (one value per sample; leave it empty for a sample "
            "without a label)",
            f"set targets.{label}.classes in {train_path} to the label's values, in order (or n_classes for "
            "labels 0..k-1)"]
    if n_subjects == len(table):
        todo.append(f"each sample is its own subject: if a person recorded several, fill subject_id in {labels_path}"
                    " (or rerun with --subject-pattern), so that no split puts them on both sides")
    if "video" in roles or "image" in roles:
        todo.append("video and images are listed but not extracted by the written config: add face features "
                    "(py-feat with its weights, or OpenFace output in face columns) or image embeddings by hand")
    todo.append("optionally fill split (e.g. train/test) for a fixed test set (cv.scheme: official)")
    return {"labels": str(labels_path), "extract": str(extract_path), "train": str(train_path),
            "n_samples": len(table), "n_subjects": int(n_subjects), "roles": roles, "todo": todo}


def _exts(role: str) -> str:
    return " ".join(e for e, r in EXTENSIONS.items() if r == role)


def configs_for(folder: Path, name: str, roles: list[str], label: str, extract_path: Path,
                train_path: Path) -> tuple[str, str]:
    """The extract config (eGeMAPS functionals and log-Mel statistics of each whole recording;
    a sentence embedding of each text) and a train config fusing them late."""
    features: dict[str, Any] = {}
    modalities: dict[str, Any] = {}
    if "audio" in roles:
        features["egemaps"] = {"extractor": {"name": "opensmile", "params": {"feature_set": "eGeMAPSv02",
                                                                             "level": "functionals"}}}
        features["logmel"] = {"extractor": {"name": "logmel"}}
        modalities["egemaps"] = [{"features": "egemaps"}]
        modalities["logmel"] = [{"features": "logmel"}]
    if "text" in roles:
        features["text"] = {"extractor": {"name": "sentence"}}
        modalities["text"] = [{"features": "text"}]
    if not features:
        raise DatasetError(f"{folder}: no audio and no text here; video needs the py-feat detector's weights or "
                           "OpenFace output (face columns), images a backbone's weights (configs/extract/emotic.yaml): "
                           "write labels.csv and the extract config by hand (README, 'Your own data')")
    root = Path(folder).resolve()
    extract = {"dataset": {"name": "folder", "root": str(root), "params": {"labels_file": "labels.csv"}},
               "store": "features_store", "n_jobs": 2, "features": features}
    train = {"extract": str(Path("..") / "extract" / extract_path.name),
             "modalities": modalities,
             "targets": {label: {"label": label, "classes": ["FILL_IN_1", "FILL_IN_2"]}},
             "model": {"name": "late-fusion", "params": {
                 "learner": {"name": "logreg", "params": {"class_weight": "balanced"},
                             "grid": {"C": [0.01, 0.1, 1.0]}},
                 "calibration": "temperature", "fusion": "mean"}},
             "cv": {"scheme": "grouped-kfold", "n_splits": 5, "n_repeats": 3, "inner_splits": 3, "seed": 0},
             "evaluation": {"n_bootstrap": 1000, "save_model": True},
             "tracking": {"uri": "sqlite:///mlruns/mlflow.db", "artifacts": "mlruns/artifacts", "experiment": name},
             "output_dir": "outputs"}
    head = (f"# Written by `fusion data init {folder}`: {name}, a `folder` dataset.\n"
            f"#   make extract CONFIG={extract_path}\n#   make train CONFIG={train_path}\n")
    return (head + yaml.safe_dump(extract, sort_keys=False),
            head + f"# Fill in targets.{label}.classes (the values of the {label!r} column, in order).\n"
            + yaml.safe_dump(train, sort_keys=False))
