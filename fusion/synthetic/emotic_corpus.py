"""A synthetic corpus in the exact EMOTIC layout whose emotion categories are planted in the
scene and not in the person: what a context model must find and a body-only model cannot.

Each image shows a scene of one of `n_scenes` kinds (a background colour and a stripe
orientation and frequency); the 26 categories are dealt out among the scene kinds, and each
kind makes its own categories likely (0.85 each) and the others rare (0.02). The people are
rectangles of random-coloured noise that fill their body boxes, drawn independently of the
categories, so a body crop carries no information about them. Valence, arousal and dominance
(1–10) follow the person's categories through a fixed per-category VAD profile plus noise.
Images are split by image into train / val / test.

Written as EMOTIC is distributed: the JPEGs under `emotic/{folder}/{filename}` (folders of the
four source databases), `Annotations/Annotations.mat` (struct arrays `train`, `val`, `test`;
train persons with `annotations_categories` / `annotations_continuous`, val/test persons with
`combined_categories` / `combined_continuous` as well) and the common CSV export
(`train.csv`, `val.csv`, `test.csv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fusion.datasets.emotic import CATEGORIES

FOLDERS = ["mscoco/images", "ade20k/images", "emodb_small/images", "framesdb/images"]


def mat_struct(**fields) -> np.ndarray:
    """A 1 × 1 MATLAB struct as scipy.io reads and writes it (fields of object dtype)."""
    rec = np.zeros((1, 1), dtype=[(k, "O") for k in fields])
    for k, v in fields.items():
        rec[0, 0][k] = v
    return rec


def mat_cell(strings) -> np.ndarray:
    """A 1 × n MATLAB cell array of strings (one empty string when there are none)."""
    arr = np.empty((1, max(len(strings), 1)), dtype=object)
    for i, s in enumerate(strings or [""]):
        arr[0, i] = s
    return arr


def _vad(v) -> np.ndarray:
    return mat_struct(valence=float(v[0]), arousal=float(v[1]), dominance=float(v[2]))


def scene_image(rng: np.random.Generator, kind: int, n_scenes: int, w: int, h: int) -> np.ndarray:
    """A (h, w, 3) uint8 scene of `kind`: its hue and its stripes' orientation and frequency."""
    import colorsys

    hue = kind / n_scenes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.85)) * 255
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    angle = np.pi * (kind % 3) / 3
    freq = 0.08 + 0.05 * (kind % 4)
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3))
    img = base[None, None, :] * (0.55 + 0.45 * stripes[..., None]) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_emotic_corpus(root: str | Path, n_images: int = 300, seed: int = 0, n_scenes: int = 9,
                           size: tuple[int, int] = (160, 120), max_people: int = 2,
                           fractions: tuple[float, float] = (0.6, 0.2)) -> Path:
    """Write the corpus under `root` and return it. `fractions` are the train and val shares of
    the images (the rest is test)."""
    from PIL import Image
    from scipy.io import savemat

    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    k = len(CATEGORIES)
    perm = rng.permutation(k)
    likely = [perm[s::n_scenes] for s in range(n_scenes)]  # every category belongs to one scene kind
    profile = rng.uniform(2.0, 9.0, size=(k, 3))  # each category's typical valence, arousal, dominance
    splits = {"train": [], "val": [], "test": []}
    csv_rows = {"train": [], "val": [], "test": []}
    n_train, n_val = int(n_images * fractions[0]), int(n_images * fractions[1])
    for i in range(n_images):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        kind = int(rng.integers(n_scenes))
        folder = FOLDERS[i % len(FOLDERS)]
        filename = f"synthetic_{i:05d}.jpg"
        img = scene_image(rng, kind, n_scenes, w, h)
        persons = []
        for _ in range(int(rng.integers(1, max_people + 1))):
            bw, bh = int(rng.integers(w // 6, w // 3)), int(rng.integers(h // 3, h // 2))
            x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            # the person's noise runs 8 px past the box, so that no scene pixel (nor the JPEG
            # blocks that mix it in) lies inside the body crop
            ya, yb, xa, xb = max(y1 - 8, 0), min(y1 + bh + 8, h), max(x1 - 8, 0), min(x1 + bw + 8, w)
            img[ya:yb, xa:xb] = rng.integers(0, 256, size=(yb - ya, xb - xa, 3), dtype=np.uint8)
            p = np.full(k, 0.02)
            p[likely[kind]] = 0.85
            cats = [CATEGORIES[j] for j in np.flatnonzero(rng.random(k) < p)] or [CATEGORIES[likely[kind][0]]]
            idx = [CATEGORIES.index(c) for c in cats]
            vad = np.clip(np.round(profile[idx].mean(0) + rng.normal(0, 0.7, 3)), 1, 10)
            persons.append(([x1, y1, x1 + bw, y1 + bh], cats, vad))
        (root / "emotic" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "emotic" / folder / filename, quality=90)
        splits[split].append((filename, folder, persons))
        for j, (bbox, cats, vad) in enumerate(persons):
            csv_rows[split].append([len(csv_rows[split]), folder, filename, str([w, h]), str(bbox), str(cats),
                                    str([int(v) for v in vad]), "Female" if j % 2 else "Male", "Adult"])
    mat = {split: _images(items, split, w, h) for split, items in splits.items()}
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    savemat(root / "Annotations" / "Annotations.mat", mat)
    header = ["Index", "Folder", "Filename", "Image Size", "BBox", "Categorical_Labels", "Continuous_Labels",
              "Gender", "Age"]
    for split, rows in csv_rows.items():
        pd.DataFrame(rows, columns=header).to_csv(root / f"{split}.csv", index=False)
    return root


def _images(items, split: str, w: int, h: int) -> np.ndarray:
    names = ("filename", "folder", "image_size", "original_database", "person")
    out = np.zeros((1, len(items)), dtype=[(n, "O") for n in names])
    for i, (filename, folder, persons) in enumerate(items):
        rec = out[0, i]
        rec["filename"], rec["folder"] = filename, folder
        rec["image_size"] = mat_struct(n_col=float(w), n_row=float(h))
        rec["original_database"] = mat_struct(name=folder.split("/")[0], info=mat_struct(image_id=float(i)))
        rec["person"] = _persons(persons, split)
    return out


def _persons(persons, split: str) -> np.ndarray:
    if split == "train":
        fields = ("body_bbox", "annotations_categories", "annotations_continuous", "gender", "age")
    else:
        fields = ("body_bbox", "annotations_categories", "combined_categories", "annotations_continuous",
                  "combined_continuous", "gender", "age")
    arr = np.zeros((1, len(persons)), dtype=[(f, "O") for f in fields])
    for j, (bbox, cats, vad) in enumerate(persons):
        rec = arr[0, j]
        rec["body_bbox"] = np.array([bbox], dtype=float)
        rec["annotations_categories"] = mat_struct(categories=mat_cell(cats))
        rec["annotations_continuous"] = _vad(vad)
        rec["gender"], rec["age"] = ("Female" if j % 2 else "Male"), "Adult"
        if split != "train":
            rec["combined_categories"] = mat_cell(cats)
            rec["combined_continuous"] = _vad(vad)
    return arr
