"""Facial action units, gaze and head pose in one schema, whatever produced them.

Sources: OpenFace 2.x CSV output (also E-DAIC's `OpenFace2.1.0_Pose_gaze_AUs.csv`), the
DAIC-WOZ `CLNF_AUs/gaze/pose.txt` trio (OpenFace 1.x, `", "` separators), py-feat CSV output
or an in-memory `Fex`, and the py-feat detector run on raw video or images.

Every source is mapped onto unified column names (`AU01_r` intensities, `AU01_c`
occurrences, `gaze_0_x … gaze_1_z`, `gaze_angle_x/y`, `pose_Tx … pose_Rz`) plus `timestamp`,
`confidence` and `success`. Frames with `success == 0`, confidence below `min_confidence` or
a non-finite value are masked, never averaged in. Per segment the extractor gives mean,
standard deviation and percentiles of each continuous column, the activation rate of each
occurrence column, the fraction of valid frames and the frame count — or, at `level: frames`,
the valid frames themselves.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import ExtractionError, Extractor, Params, Sample, Segment, feature_frame
from features.registry import EXTRACTORS

OPENFACE2_AU_R = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                  "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
OPENFACE2_AU_C = OPENFACE2_AU_R[:-1] + ["AU28", "AU45"]
DAIC_AU_R = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU10", "AU12", "AU14", "AU15",
             "AU17", "AU20", "AU25", "AU26"]
DAIC_AU_C = ["AU04", "AU12", "AU15", "AU23", "AU28", "AU45"]
PYFEAT_AU = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14",
             "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43"]
# Plain-language names of the action units (FACS), for descriptions and reports.
AU_NAMES = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer", "AU05": "upper lid raiser",
    "AU06": "cheek raiser", "AU07": "lid tightener", "AU09": "nose wrinkler", "AU10": "upper lip raiser",
    "AU11": "nasolabial deepener", "AU12": "lip corner puller (smile)", "AU14": "dimpler",
    "AU15": "lip corner depressor", "AU17": "chin raiser", "AU20": "lip stretcher", "AU23": "lip tightener",
    "AU24": "lip pressor", "AU25": "lips part", "AU26": "jaw drop", "AU28": "lip suck", "AU43": "eyes closed",
    "AU45": "blink",
}
GAZE_VECTORS = [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"]
GAZE_HEAD = [f"gaze_h{e}_{a}" for e in (0, 1) for a in "xyz"]
GAZE_ANGLES = ["gaze_angle_x", "gaze_angle_y"]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
POSE_ROTATION = ["pose_Rx", "pose_Ry", "pose_Rz"]

# Continuous and occurrence columns of each layout.
SCHEMAS: dict[str, tuple[list[str], list[str]]] = {
    "openface2": ([f"{a}_r" for a in OPENFACE2_AU_R] + GAZE_VECTORS + GAZE_ANGLES + POSE,
                  [f"{a}_c" for a in OPENFACE2_AU_C]),
    "daic": ([f"{a}_r" for a in DAIC_AU_R] + GAZE_VECTORS + GAZE_HEAD + GAZE_ANGLES + POSE,
             [f"{a}_c" for a in DAIC_AU_C]),
    "pyfeat": ([f"{a}_r" for a in PYFEAT_AU] + POSE_ROTATION, [f"{a}_c" for a in PYFEAT_AU]),
}
DAIC_RENAME = {
    "x_0": "gaze_0_x", "y_0": "gaze_0_y", "z_0": "gaze_0_z",
    "x_1": "gaze_1_x", "y_1": "gaze_1_y", "z_1": "gaze_1_z",
    "x_h0": "gaze_h0_x", "y_h0": "gaze_h0_y", "z_h0": "gaze_h0_z",
    "x_h1": "gaze_h1_x", "y_h1": "gaze_h1_y", "z_h1": "gaze_h1_z",
    # The DAIC-WOZ documentation names the pose translation X, Y, Z; released CLNF_pose files
    # name it Tx, Ty, Tz. Both are accepted.
    "X": "pose_Tx", "Y": "pose_Ty", "Z": "pose_Tz", "Tx": "pose_Tx", "Ty": "pose_Ty", "Tz": "pose_Tz",
    "Rx": "pose_Rx", "Ry": "pose_Ry", "Rz": "pose_Rz",
    "detection_success": "success", "frame_number": "frame",
}
# What each file of the DAIC-WOZ CLNF trio must hold (after renaming), by media role.
DAIC_FILE_COLUMNS = {
    "face_au": [f"{a}_r" for a in DAIC_AU_R] + [f"{a}_c" for a in DAIC_AU_C],
    "face_gaze": GAZE_VECTORS + GAZE_HEAD,
    "face_pose": POSE,
}
DAIC_FILE_HINT = {
    "face_au": "AU01_r … AU26_r and AU04_c … AU45_c",
    "face_gaze": "x_0, y_0, z_0, x_1, y_1, z_1, x_h0 … z_h1",
    "face_pose": "X, Y, Z (or Tx, Ty, Tz), Rx, Ry, Rz",
}


def _read_table(path: Path) -> pd.DataFrame:
    """A comma-separated OpenFace / py-feat file (", " separators allowed)."""
    try:
        df = pd.read_csv(path, skipinitialspace=True, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise ExtractionError(f"{path}: cannot read face features: {str(err).strip()}", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise ExtractionError(f"{path}: no frames (header only)", path)
    return df


def _numeric(df: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    out = df.apply(pd.to_numeric, errors="coerce")
    bad = [c for c in df.columns if out[c].isna().all() and df[c].notna().any()]
    if bad:
        raise ExtractionError(f"{path}: non-numeric column(s) {bad[:5]}", _file(path))
    return out


def _file(path: Path | str) -> str | None:
    return None if str(path).startswith("<") else str(path)


def _require(df: pd.DataFrame, columns: list[str], path: Path | str, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ExtractionError(f"{path}: {what} lacks column(s) {missing[:6]}{' …' if len(missing) > 6 else ''}",
                              _file(path))


def add_gaze_angles(df: pd.DataFrame) -> pd.DataFrame:
    """OpenFace's gaze angles (radians) from the two eyes' gaze vectors, when absent."""
    if all(c in df.columns for c in GAZE_ANGLES) or not all(c in df.columns for c in GAZE_VECTORS):
        return df
    gx = (df["gaze_0_x"] + df["gaze_1_x"]) / 2
    gy = (df["gaze_0_y"] + df["gaze_1_y"]) / 2
    gz = (df["gaze_0_z"] + df["gaze_1_z"]) / 2
    df = df.copy()
    df["gaze_angle_x"] = np.arctan2(gx, -gz)
    df["gaze_angle_y"] = np.arctan2(gy, -gz)
    return df


def from_openface(df: pd.DataFrame, path: Path | str = "<frame>") -> pd.DataFrame:
    """OpenFace 2.x output (CSV columns) → unified frame table (one face per frame)."""
    df = df.rename(columns={c: c.strip() for c in df.columns})
    _require(df, ["timestamp", "confidence", "success"], path, "OpenFace output")
    keep = [c for c in df.columns if c in ("frame", "face_id", "timestamp", "confidence", "success")
            or c.endswith(("_r", "_c")) and c.startswith("AU") or c.startswith(("gaze_", "pose_"))]
    df = _numeric(df[keep], path)
    return add_gaze_angles(_one_face(df))


def from_daic(au: Path, gaze: Path | None, pose: Path | None) -> pd.DataFrame:
    """The DAIC-WOZ CLNF trio → unified frame table, joined on frame number. Each file is
    checked for its own columns, so a missing column is blamed on the file that lacks it."""
    tables = []
    for role, path in (("face_au", au), ("face_gaze", gaze), ("face_pose", pose)):
        if path is None:
            continue
        df = _read_table(path).rename(columns=DAIC_RENAME)
        # the AU file's tracking confidence and success mask the frames of all three
        _require(df, ["frame", "timestamp"] + (["confidence", "success"] if not tables else []), path,
                 "DAIC CLNF file")
        missing = [c for c in DAIC_FILE_COLUMNS[role] if c not in df.columns]
        if missing:
            names = {v: k for k, v in DAIC_RENAME.items() if k not in ("Tx", "Ty", "Tz")}
            raise ExtractionError(f"{path}: DAIC CLNF {role.removeprefix('face_')} file lacks column(s) "
                                  f"{[names.get(c, c) for c in missing][:6]} (expected {DAIC_FILE_HINT[role]})",
                                  path)
        tables.append((path, _numeric(df, path)))
    base_path, out = tables[0]
    for path, df in tables[1:]:
        if len(df) != len(out):
            raise ExtractionError(f"{path}: {len(df)} frames but {base_path.name} has {len(out)}", path)
        extra = df.drop(columns=[c for c in ("timestamp", "confidence", "success") if c in df.columns])
        out = out.merge(extra, on="frame", how="inner", validate="one_to_one")
    return add_gaze_angles(out)


def from_pyfeat(df: pd.DataFrame, fps: float, detection_threshold: float,
                path: Path | str = "<Fex>", pose_units: str = "radians",
                warnings: list[str] | None = None) -> pd.DataFrame:
    """py-feat detector output (CSV or Fex) → unified frame table.

    Head pose: py-feat 2.x writes Pitch, Roll and Yaw in radians (its own plotting code says
    so and stopped converting them from degrees), and they are taken as they are; output of
    releases that wrote degrees needs `pose_units="degrees"`. Angles beyond ±π under "radians"
    are warned about.
    """
    df = pd.DataFrame(df)
    if "FaceScore" not in df.columns:
        raise ExtractionError(f"{path}: not py-feat output (no FaceScore column)", _file(path))
    out = pd.DataFrame(index=df.index)
    frame = pd.to_numeric(df["frame"], errors="coerce") if "frame" in df.columns else pd.Series(
        np.arange(len(df)), index=df.index)
    out["frame"] = frame
    if "approx_time" in df.columns and pd.to_numeric(df["approx_time"], errors="coerce").notna().all():
        out["timestamp"] = pd.to_numeric(df["approx_time"])
    else:
        out["timestamp"] = frame / fps
    score = pd.to_numeric(df["FaceScore"], errors="coerce")
    out["confidence"] = score.fillna(0.0)
    out["success"] = (score >= detection_threshold).astype(int)
    for au in PYFEAT_AU:
        if au in df.columns:
            out[f"{au}_r"] = pd.to_numeric(df[au], errors="coerce")
    for name, col in (("pose_Rx", "Pitch"), ("pose_Ry", "Yaw"), ("pose_Rz", "Roll")):
        if col in df.columns:
            angle = pd.to_numeric(df[col], errors="coerce")
            out[name] = np.deg2rad(angle) if pose_units == "degrees" else angle
    if pose_units == "radians" and warnings is not None:
        angles = out[[c for c in ("pose_Rx", "pose_Ry", "pose_Rz") if c in out.columns]].abs().max().max()
        if angles > np.pi:
            warnings.append(f"{path}: head pose angles up to {angles:.3g} exceed pi although py-feat 2.x writes "
                            "radians; if this file holds degrees (older py-feat), set pose_units: degrees")
    return _one_face(out)


def _one_face(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the most confident face of each frame (the participant in an interview)."""
    if "frame" in df.columns and df["frame"].duplicated().any():
        df = df.sort_values(["frame", "confidence"], ascending=[True, False])
        df = df.drop_duplicates("frame", keep="first")
    return df.reset_index(drop=True)


def read_face_files(sample: Sample, fps: float = 30.0, detection_threshold: float = 0.5,
                    pose_units: str = "radians", warnings: list[str] | None = None) -> pd.DataFrame:
    """The unified frame table of a sample's face files (see module docstring)."""
    media = sample.media
    if "face" in media:
        path = Path(media["face"])
        df = _read_table(path)
        if "FaceScore" in df.columns:
            return from_pyfeat(df, fps, detection_threshold, path, pose_units, warnings)
        return from_openface(df, path)
    if "face_au" in media:
        return from_daic(Path(media["face_au"]), _opt(media.get("face_gaze")), _opt(media.get("face_pose")))
    raise ExtractionError(f"sample {sample.sample_id!r} has no face features file "
                          f"(expected media 'face' or 'face_au'; it has {list(media)})")


def _opt(p) -> Path | None:
    return None if p is None else Path(p)


class FaceParams(Params):
    layout: Literal["openface2", "daic", "pyfeat"] = "openface2"
    pose_units: Literal["radians", "degrees"] = "radians"
    level: Literal["functionals", "frames"] = "functionals"
    min_confidence: float = Field(0.75, ge=0, le=1)
    percentiles: list[float] = Field(default_factory=lambda: [10.0, 50.0, 90.0])
    activation_threshold: float = Field(0.5, ge=0)
    fps: float = Field(30.0, gt=0)
    detection_threshold: float = Field(0.5, ge=0, le=1)


class FaceFeatures:
    """The masking and pooling shared by the face importer and the py-feat detector."""

    params: FaceParams

    @property
    def columns(self) -> tuple[list[str], list[str]]:
        return SCHEMAS[self.params.layout]

    @property
    def feature_names(self) -> list[str]:
        cont, occ = self.columns
        if self.params.level == "frames":
            return cont + occ
        stats = ["mean", "std"] + [f"p{q:g}" for q in self.params.percentiles]
        return ([f"{c}__{s}" for c in cont for s in stats] + [f"{c}__rate" for c in occ]
                + ["valid_fraction", "n_frames"])

    def pool(self, frames: pd.DataFrame, segments: Sequence[Segment] | None, sample_id: str,
             path: Path | str) -> pd.DataFrame:
        """Mask invalid frames, then pool per segment (or return the valid frames)."""
        cont, occ = self.columns
        p = self.params
        if p.layout == "pyfeat":
            for c in occ:
                r = c[:-2] + "_r"
                if r in frames.columns and c not in frames.columns:
                    frames[c] = (frames[r] >= p.activation_threshold).astype(float)
        missing = [c for c in cont + occ if c not in frames.columns]
        if missing:
            raise ExtractionError(
                f"{path}: face features lack {len(missing)} column(s) of the {p.layout!r} layout "
                f"(e.g. {missing[:4]}); choose the layout that matches the source", _file(path))
        _require(frames, ["timestamp", "confidence", "success"], path, "face features")
        warnings: list[str] = list(frames.attrs.get("warnings", []))
        frames = self._in_time_order(frames, path, warnings)
        values = frames[cont + occ].to_numpy(dtype=np.float64)
        finite = np.isfinite(values).all(axis=1)
        ok = (frames["success"].to_numpy() == 1) & (frames["confidence"].to_numpy() >= p.min_confidence)
        if (ok & ~finite).any():
            warnings.append(f"{path}: {int((ok & ~finite).sum())} tracked frame(s) with NaN/inf values "
                            "masked")
        valid = ok & finite
        if not valid.any():
            raise ExtractionError(
                f"{path}: no usable frame among {len(frames)} (success == 1, confidence ≥ "
                f"{p.min_confidence} and finite values)", _file(path))
        t = frames["timestamp"].to_numpy(dtype=np.float64)
        step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / p.fps
        if p.level == "frames":
            keep = valid if segments is None else valid & _in_any(t, segments)
            spans = list(zip(t[keep], t[keep] + step, strict=True))
            frame = feature_frame(sample_id, spans, values[keep].astype(np.float32), cont + occ)
            frame.attrs["warnings"] = warnings
            return frame
        spans = [(0.0, float(t[-1] + step))] if segments is None else [(s.start, s.end) for s in segments]
        rows, empty = [], 0
        n_cont = len(cont)
        for start, end in spans:
            inside = (t >= start) & (t < end) if segments is not None else np.ones(len(t), bool)
            use = inside & valid
            n = int(inside.sum())
            if not use.any():
                empty += 1
                rows.append(np.r_[np.full(len(self.feature_names) - 2, np.nan), 0.0, n])
                continue
            v = values[use]
            stats = [v[:, :n_cont].mean(0), v[:, :n_cont].std(0)]
            stats += list(np.percentile(v[:, :n_cont], p.percentiles, axis=0))
            per_col = np.stack(stats, axis=1).reshape(-1)  # column-major: c1 stats, c2 stats, …
            rates = (v[:, n_cont:] >= p.activation_threshold).mean(0)
            rows.append(np.r_[per_col, rates, use.sum() / max(n, 1), n])
        if empty:
            warnings.append(f"{path}: {empty} segment(s) without a usable frame; their statistics are NaN")
        frame = feature_frame(sample_id, spans, np.array(rows, dtype=np.float32), self.feature_names)
        frame.attrs["warnings"] = warnings
        return frame


    @staticmethod
    def _in_time_order(frames: pd.DataFrame, path: Path | str, warnings: list[str]) -> pd.DataFrame:
        """Drop frames whose timestamp is not a number and sort the rest by frame (or time),
        each with a warning: a frame without a time cannot be placed in any segment."""
        t = pd.to_numeric(frames["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(t)
        if bad.any():
            warnings.append(f"{path}: {int(bad.sum())} frame(s) with unparseable timestamps left out")
            frames = frames[~bad]
            if frames.empty:
                raise ExtractionError(f"{path}: no frame has a usable timestamp", _file(path))
        order = "frame" if "frame" in frames.columns and frames["frame"].notna().all() else "timestamp"
        if not (frames[order].is_monotonic_increasing and frames["timestamp"].is_monotonic_increasing):
            warnings.append(f"{path}: frames are not in time order; sorted by {order}")
            frames = frames.sort_values([order, "timestamp"], kind="stable")
        return frames.reset_index(drop=True)


def _in_any(t: np.ndarray, segments: Sequence[Segment]) -> np.ndarray:
    mask = np.zeros(len(t), dtype=bool)
    for s in segments:
        mask |= (t >= s.start) & (t < s.end)
    return mask


@EXTRACTORS.register("face")
class FaceExtractor(FaceFeatures, Extractor):
    """Import OpenFace 2.x / E-DAIC / DAIC-WOZ CLNF / py-feat outputs and pool them per segment.

    Args:
        layout: "openface2" (OpenFace 2.x, E-DAIC), "daic" (DAIC-WOZ CLNF files) or "pyfeat":
            which columns are expected (a file lacking them is an error for that sample).
        level: "functionals" (statistics per segment) or "frames" (the valid frames).
        min_confidence: frames below this tracking confidence are masked.
        percentiles: percentiles of each continuous column.
        activation_threshold: an occurrence column counts as active at or above this value
            (py-feat occurrences are its AU probabilities thresholded here).
        fps: frame rate for py-feat output that has frame numbers but no times.
        detection_threshold: py-feat FaceScore below this is a failed frame.
        pose_units: py-feat head pose units, "radians" (py-feat 2.x) or "degrees" (older output).
    """

    name = "face"
    version = "1"
    modality = "face"
    media = ("face", "face_au", "face_gaze", "face_pose")
    Params = FaceParams

    def library_versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "pandas": pd.__version__}

    def source_files(self, sample: Sample) -> dict[str, Path]:
        files = super().source_files(sample)
        if "face" in files:
            return {"face": files["face"]}
        return files

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        files = self.source_files(sample)
        warnings: list[str] = []
        frames = read_face_files(sample, self.params.fps, self.params.detection_threshold, self.params.pose_units,
                                 warnings)
        frames.attrs["warnings"] = warnings
        return self.pool(frames, segments, sample.sample_id, next(iter(files.values())))

    def process_fex(self, fex: pd.DataFrame, segments: Sequence[Segment] | None = None,
                    sample_id: str = "fex") -> pd.DataFrame:
        """Pool an in-memory py-feat `Fex` (or OpenFace DataFrame) like a file."""
        warnings: list[str] = []
        if "FaceScore" in fex.columns:
            frames = from_pyfeat(fex, self.params.fps, self.params.detection_threshold, "<Fex>",
                                 self.params.pose_units, warnings)
        else:
            frames = from_openface(pd.DataFrame(fex))
        frames.attrs["warnings"] = warnings
        return self.pool(frames, segments, sample_id, "<Fex>")


class PyFeatParams(FaceParams):
    layout: Literal["pyfeat"] = "pyfeat"
    pose_units: Literal["radians"] = "radians"
    face_model: str = "retinaface"
    landmark_model: str = "mobilefacenet"
    au_model: str = "xgb"
    emotion_model: str | None = None
    device: str = "auto"
    batch_size: int = Field(1, ge=1)
    skip_frames: int | None = None
    weights_dir: str | None = None


@contextlib.contextmanager
def _weights_from(directory: str | None):
    """py-feat reads its weights through `get_resource_path()`; point it at `directory`."""
    if directory is None:
        yield
        return
    import sys

    import feat.utils.io

    original = feat.utils.io.get_resource_path
    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("feat") and getattr(m, "get_resource_path", None) is original]
    for module in patched:
        module.get_resource_path = lambda: directory
    try:
        yield
    finally:
        for module in patched:
            module.get_resource_path = original


@functools.lru_cache(maxsize=1)
def load_detector(face_model: str, landmark_model: str, au_model: str, emotion_model: str | None,
                  device: str, weights_dir: str | None):
    try:
        import feat
    except (ImportError, OSError, RuntimeError) as err:
        raise ExtractionError(f"cannot import py-feat ({err}); it needs ffmpeg's shared libraries "
                              "(Debian/Ubuntu: apt-get install ffmpeg)") from None
    try:
        # py-feat 2.1 names its classic detector Detectorv1 (older releases: Detector).
        detector_cls = getattr(feat, "Detectorv1", None) or feat.Detector
        with _weights_from(weights_dir):
            return detector_cls(face_model=face_model, landmark_model=landmark_model,
                                au_model=au_model, emotion_model=emotion_model,
                                identity_model=None, gaze_model=None, device=device)
    except Exception as err:  # noqa: BLE001 - any hub/IO failure means: weights unavailable
        where = weights_dir or f"{Path(feat.__file__).parent / 'resources'} (py-feat's resource folder)"
        raise ExtractionError(
            f"py-feat detector weights are not available ({type(err).__name__}: {err}). Run the "
            f"detector once with network access so py-feat caches them in {where}, or copy that "
            f"cache from a machine that has it and set the extractor's weights_dir to it."
        ) from None


@EXTRACTORS.register("pyfeat")
class PyFeatDetectorExtractor(FaceFeatures, Extractor):
    """Run the py-feat detector on raw video or images, then pool like `face` (layout pyfeat).

    Weights come from py-feat's Hugging Face cache, or from `weights_dir` laid out the same
    way; without them `check()` fails before any sample with instructions.
    """

    name = "pyfeat"
    version = "1"
    modality = "face"
    media = ("video", "image")
    Params = PyFeatParams

    def library_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"py-feat": version("py-feat"), "numpy": np.__version__}

    def _detector(self):
        p = self.params
        device = p.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return load_detector(p.face_model, p.landmark_model, p.au_model, p.emotion_model, device,
                             p.weights_dir)

    def check(self) -> None:
        self._detector()

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        files = self.source_files(sample)
        role, path = next(iter(files.items()))
        detector = self._detector()
        kind = "video" if role == "video" else "image"
        fex = detector.detect(str(path), data_type=kind, batch_size=self.params.batch_size,
                              skip_frames=self.params.skip_frames, progress_bar=False)
        if fex is None or len(fex) == 0:
            raise ExtractionError(f"{path}: py-feat found no frame to analyse", path)
        # the detector itself writes radians
        frames = from_pyfeat(fex, self.params.fps, self.params.detection_threshold, path, "radians")
        return self.pool(frames, segments, sample.sample_id, path)
