"""EMOTIC: people in context, 26 emotion categories and valence/arousal/dominance (1–10).

Two annotation sources, as distributed and as commonly exported:

- `Annotations/Annotations.mat` (read with scipy): struct arrays `train`, `val`, `test` of
  images (`filename`, `folder`, `image_size`, `original_database`, `person`); each person has
  `body_bbox` [x1 y1 x2 y2], categories and continuous annotations (train: one annotator,
  `annotations_categories` / `annotations_continuous`; val/test: several annotators plus
  `combined_categories` / `combined_continuous`, which are used), `gender` and `age`.
- the CSV export (`train.csv`, `val.csv`, `test.csv`: `Index, Folder, Filename, Image Size,
  BBox, Categorical_Labels, Continuous_Labels, Gender, Age`, lists written as Python lists).

One sample per annotated person; the image is the subject (people in one image share it).
Images resolve under `root/emotic/{folder}/{filename}` or `root/{folder}/{filename}`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError

CATEGORIES = ["Affection", "Anger", "Annoyance", "Anticipation", "Aversion", "Confidence",
              "Disapproval", "Disconnection", "Disquietment", "Doubt/Confusion", "Embarrassment",
              "Engagement", "Esteem", "Excitement", "Fatigue", "Fear", "Happiness", "Pain", "Peace",
              "Pleasure", "Sadness", "Sensitivity", "Suffering", "Surprise", "Sympathy", "Yearning"]
SPLITS = ("train", "val", "test")
VAD = ("valence", "arousal", "dominance")


class EmoticParams(Params):
    annotations: Literal["auto", "mat", "csv"] = "auto"
    csv_dir: str | None = None
    splits: list[Literal["train", "val", "test"]] = list(SPLITS)


def category_column(name: str) -> str:
    return "cat_" + name.replace("/", "_")


def _py(x: Any) -> Any:
    """Unwrap scipy's nested object arrays down to a Python value."""
    while isinstance(x, np.ndarray):
        if x.dtype.names is not None:
            return x
        if x.size == 0:
            return None
        if x.dtype == object or x.size == 1:
            x = x.flat[0] if x.size == 1 else x
            if isinstance(x, np.ndarray) and x.dtype == object and x.size > 1:
                return [_py(v) for v in x.flat]
        else:
            return x.tolist()
    return x.item() if isinstance(x, np.generic) else x


def _field(record: np.ndarray, name: str) -> Any:
    if record.dtype.names is None or name not in record.dtype.names:
        return None
    return record[name]


def _strings(x: Any) -> list[str]:
    """A MATLAB cell array of strings (any nesting) → list of str."""
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US":
            return [str(v) for v in x.flat]
        return [s for v in x.flat for s in _strings(v)]
    if isinstance(x, list | tuple):
        return [s for v in x for s in _strings(v)]
    return [str(x)]


def _struct_values(x: Any, names: tuple[str, ...]) -> list[float]:
    rec = x
    while isinstance(rec, np.ndarray) and rec.dtype.names is None and rec.size == 1 and rec.dtype == object:
        rec = rec.flat[0]
    if not isinstance(rec, np.ndarray) or rec.dtype.names is None:
        return [np.nan] * len(names)
    rec = rec.flat[0]
    return [float(np.asarray(_py(rec[n]), dtype=float)) if _py(rec[n]) is not None else np.nan
            for n in names]


@DATASETS.register("emotic")
class Emotic(DatasetAdapter):
    """EMOTIC persons with categories, VAD, gender, age and body box."""

    name = "emotic"
    Params = EmoticParams

    def _image(self, folder: str, filename: str) -> Path | None:
        for base in (self.root / "emotic", self.root):
            p = base / folder / filename
            if p.exists():
                return p
        return None

    def _load(self) -> list[Sample]:
        mode = self.params.annotations
        mat = self.root / "Annotations" / "Annotations.mat"
        csv_dir = Path(self.params.csv_dir) if self.params.csv_dir else self.root
        if mode == "auto":
            mode = "mat" if mat.exists() else "csv"
        rows = self._from_mat(mat) if mode == "mat" else self._from_csv(csv_dir)
        samples = []
        for r in rows:
            image = self._image(r["folder"], r["filename"])
            where = f"{r['split']} {r['folder']}/{r['filename']} person {r['person']}"
            if image is None:
                self.problems.append(f"{where}: image not found under {self.root}")
            unknown = sorted(set(r["categories"]) - set(CATEGORIES))
            if unknown:
                raise DatasetError(f"{r['source']}: {where}: unknown categories {unknown}; expected "
                                   "the 26 EMOTIC categories")
            vad = dict(zip(VAD, r["vad"], strict=True))
            bad = {k: v for k, v in vad.items() if not np.isnan(v) and not 1 <= v <= 10}
            if bad:
                raise DatasetError(f"{r['source']}: {where}: continuous labels {bad} outside 1–10")
            if any(np.isnan(v) for v in vad.values()) or not r["categories"]:
                self.problems.append(f"{where}: incomplete annotation (categories {r['categories']}, "
                                     f"VAD {list(vad.values())})")
            x1, y1, x2, y2 = r["bbox"]
            w, h = r["size"]
            clipped = [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]
            if clipped != [x1, y1, x2, y2]:
                self.problems.append(f"{where}: body box {r['bbox']} exceeds the {w}×{h} image; clipped")
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                # kept, so that extraction records it as this person's error and keeps the others
                self.problems.append(f"{where}: body box {r['bbox']} is empty within the {w}×{h} image "
                                     "(zero area, or outside it); its crops cannot be made")
            labels = {category_column(c): int(c in r["categories"]) for c in CATEGORIES}
            labels.update(vad)
            box = clipped if clipped[2] > clipped[0] and clipped[3] > clipped[1] else r["bbox"]
            labels.update({"gender": r["gender"], "age": r["age"], "bbox_x1": box[0],
                           "bbox_y1": box[1], "bbox_x2": box[2], "bbox_y2": box[3]})
            media = {"image": image} if image is not None else {}
            samples.append(Sample(f"{r['split']}_{r['index']}_{r['person']}",
                                  f"{r['folder']}/{r['filename']}", media, labels, split=r["split"]))
        if not samples:
            raise DatasetError(f"emotic: no annotated persons under {self.root}")
        return samples

    def _from_mat(self, path: Path) -> list[dict]:
        from scipy.io import loadmat

        if not path.exists():
            raise DatasetError(f"emotic: {path} not found")
        try:
            mat = loadmat(path)
        except (ValueError, OSError, NotImplementedError) as err:
            raise DatasetError(f"{path}: cannot read MATLAB annotations: {err}") from None
        rows = []
        for split in self.params.splits:
            if split not in mat:
                self.problems.append(f"{path.name} has no {split!r} struct")
                continue
            images = mat[split]
            for i, img in enumerate(images.flat):
                size = _field(img, "image_size")
                width, height = (_struct_values(size, ("n_col", "n_row")) if size is not None
                                 else (np.nan, np.nan))
                persons = _field(img, "person")
                for j, person in enumerate([] if persons is None else persons.flat):
                    if split == "train":
                        cats = _field(person, "annotations_categories")
                        cats = _field(cats.flat[0], "categories") if cats is not None and cats.size else None
                        vad = _struct_values(_field(person, "annotations_continuous"), VAD)
                    else:
                        cats = _field(person, "combined_categories")
                        vad = _struct_values(_field(person, "combined_continuous"), VAD)
                    bbox = np.asarray(_py(_field(person, "body_bbox")), dtype=float).ravel().tolist()
                    rows.append({"split": split, "index": i, "person": j, "source": path,
                                 "filename": str(_py(_field(img, "filename"))),
                                 "folder": str(_py(_field(img, "folder"))),
                                 "size": (width, height), "bbox": [int(round(v)) for v in bbox],
                                 "categories": _strings(cats), "vad": vad,
                                 "gender": str(_py(_field(person, "gender"))),
                                 "age": str(_py(_field(person, "age")))})
        return rows

    def _from_csv(self, folder: Path) -> list[dict]:
        rows = []
        required = ["Folder", "Filename", "Image Size", "BBox", "Categorical_Labels", "Continuous_Labels"]
        found_any = False
        for split in self.params.splits:
            path = folder / f"{split}.csv"
            if not path.exists():
                self.problems.append(f"{path.name} not found in {folder}")
                continue
            found_any = True
            df = pd.read_csv(path)
            missing = [c for c in required if c not in df.columns]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
            for k, r in enumerate(df.to_dict("records")):
                try:
                    size = ast.literal_eval(r["Image Size"])
                    bbox = ast.literal_eval(r["BBox"])
                    cats = ast.literal_eval(r["Categorical_Labels"])
                    cont = ast.literal_eval(r["Continuous_Labels"])
                except (ValueError, SyntaxError) as err:
                    raise DatasetError(f"{path}: line {k + 2}: cannot parse a list column ({err})") from None
                if len(bbox) != 4 or len(cont) != 3:
                    raise DatasetError(f"{path}: line {k + 2}: BBox needs 4 numbers and "
                                       f"Continuous_Labels 3, got {bbox} and {cont}")
                rows.append({"split": split, "index": int(r.get("Index", k)), "person": 0,
                             "source": path, "filename": r["Filename"], "folder": r["Folder"],
                             "size": tuple(size), "bbox": [int(v) for v in bbox], "categories": list(cats),
                             "vad": [float(v) for v in cont], "gender": str(r.get("Gender", "")),
                             "age": str(r.get("Age", ""))})
        if not found_any:
            raise DatasetError(f"emotic: neither Annotations/Annotations.mat nor train/val/test.csv under "
                               f"{folder}")
        return rows
