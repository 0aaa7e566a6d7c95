"""Face importers and pooling: real OpenFace / py-feat outputs, DAIC CLNF files, masking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.base import ExtractionError, Sample, Segment
from features.face import SCHEMAS, FaceExtractor, PyFeatDetectorExtractor, read_face_files


def openface_csv(path, n=30, success=None, confidence=None, extra=None):
    """A small OpenFace-2-style CSV written by the test (", " separators, as OpenFace does)."""
    cont, occ = SCHEMAS["openface2"]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"frame": np.arange(1, n + 1), "face_id": 0, "timestamp": np.arange(n) / 30,
                       "confidence": confidence if confidence is not None else np.full(n, 0.95),
                       "success": success if success is not None else np.ones(n, int)})
    for c in cont:
        if c.startswith("gaze_angle"):
            continue
        df[c] = rng.uniform(0, 2, n)
    for c in occ:
        df[c] = (rng.uniform(0, 1, n) > 0.5).astype(float)
    for k, v in (extra or {}).items():
        df[k] = v
    df.to_csv(path, index=False, sep=",")
    text = path.read_text().replace(",", ", ")
    path.write_text(text)
    return df


def test_real_openface_file_preserved(shared_data):
    path = shared_data / "face_samples" / "OpenFace_Test.csv"
    raw = pd.read_csv(path, skipinitialspace=True)
    sample = Sample("of", "of", {"face": path})
    frames = FaceExtractor(level="frames").process_sample(sample, None)
    assert len(frames) == len(raw) == 100  # every frame tracked (success 1, confidence ≥ 0.88)
    au_r = [c for c in raw.columns if c.startswith("AU") and c.endswith("_r")]
    au_c = [c for c in raw.columns if c.startswith("AU") and c.endswith("_c")]
    assert (len(au_r), len(au_c)) == (17, 18)
    for c in au_r + au_c:
        np.testing.assert_allclose(frames[c].to_numpy(), raw[c].to_numpy(), rtol=1e-6, atol=1e-6)
    pooled = FaceExtractor().process_sample(sample, None)
    assert pooled.shape == (1, 175)
    assert pooled["n_frames"].iloc[0] == 100 and pooled["valid_fraction"].iloc[0] == 1.0
    np.testing.assert_allclose(pooled["AU12_r__mean"].iloc[0], raw["AU12_r"].mean(), rtol=1e-5)
    np.testing.assert_allclose(pooled["pose_Rx__p50"].iloc[0], raw["pose_Rx"].median(), rtol=1e-5)
    np.testing.assert_allclose(pooled["AU45_c__rate"].iloc[0], raw["AU45_c"].mean(), rtol=1e-6)
    # gaze angles derived from the vectors the way OpenFace defines them
    gx = (raw["gaze_0_x"] + raw["gaze_1_x"]) / 2
    gz = (raw["gaze_0_z"] + raw["gaze_1_z"]) / 2
    np.testing.assert_allclose(frames["gaze_angle_x"], np.arctan2(gx, -gz), rtol=1e-5, atol=1e-6)


def test_real_openface_matches_pyfeat_reader(shared_data):
    try:
        from feat.utils.io import read_openface
    except (ImportError, OSError, RuntimeError) as err:
        pytest.skip(f"py-feat cannot be imported here ({err}); it needs ffmpeg's shared libraries")
    path = shared_data / "face_samples" / "OpenFace_Test.csv"
    fex = read_openface(str(path))
    ours = FaceExtractor(level="frames").process_sample(Sample("of", "of", {"face": path}), None)
    from_fex = FaceExtractor(level="frames").process_fex(fex, sample_id="of")
    for c in fex.au_columns:
        np.testing.assert_allclose(ours[c].to_numpy(), fex[c].to_numpy(), rtol=1e-6)
    pd.testing.assert_frame_equal(ours, from_fex)


def test_real_pyfeat_csv(shared_data):
    path = shared_data / "face_samples" / "Feat_Test.csv"
    raw = pd.read_csv(path)
    out = FaceExtractor(layout="pyfeat").process_sample(Sample("pf", "pf", {"face": path}), None)
    assert out.shape == (1, 20 * 5 + 3 * 5 + 20 + 2)
    assert out["AU12_r__mean"].iloc[0] == pytest.approx(raw["AU12"].iloc[0], rel=1e-5)
    assert out["AU12_c__rate"].iloc[0] == float(raw["AU12"].iloc[0] >= 0.5)
    # py-feat 2.x writes radians: taken as they are. This file (from py-feat's own test data) holds
    # Yaw 4.87, more than pi: a warning says it looks like degrees and how to say so.
    assert out["pose_Rx__mean"].iloc[0] == pytest.approx(raw["Pitch"].iloc[0], rel=1e-5)
    assert any("Feat_Test.csv" in w and "pose_units: degrees" in w for w in out.attrs["warnings"])
    deg = FaceExtractor(layout="pyfeat", pose_units="degrees").process_sample(Sample("pf", "pf", {"face": path}), None)
    assert deg["pose_Rx__mean"].iloc[0] == pytest.approx(np.deg2rad(raw["Pitch"].iloc[0]), rel=1e-5)
    with pytest.raises(ExtractionError, match="lack .* 'openface2' layout"):
        FaceExtractor(layout="openface2").process_sample(Sample("pf", "pf", {"face": path}), None)


def test_daic_trio_masks_failed_frames(demo_corpus):
    pid = "300"
    folder = demo_corpus / f"{pid}_P"
    media = {"face_au": folder / f"{pid}_CLNF_AUs.txt", "face_gaze": folder / f"{pid}_CLNF_gaze.txt",
             "face_pose": folder / f"{pid}_CLNF_pose.txt"}
    sample = Sample(pid, pid, media)
    frames = read_face_files(sample)
    au = pd.read_csv(media["face_au"], sep=", ", engine="python")
    assert len(frames) == len(au)
    assert {"gaze_0_x", "gaze_h1_z", "pose_Tz", "pose_Rx", "gaze_angle_y"} <= set(frames.columns)
    out = FaceExtractor(layout="daic").process_sample(sample, [Segment(0, 10), Segment(10, 20)])
    ok = (au["success"] == 1) & (au["confidence"] >= 0.75)
    first = ok & (au["timestamp"] < 10)
    assert out["AU15_r__mean"].iloc[0] == pytest.approx(au.loc[first, "AU15_r"].mean(), rel=1e-5)
    assert out["valid_fraction"].iloc[0] == pytest.approx(first.sum() / (au["timestamp"] < 10).sum())
    # the zeros OpenFace writes for failed frames never enter the means
    assert (au.loc[au["success"] == 0, "AU15_r"] == 0).all()


def test_low_confidence_and_nonfinite_frames_are_masked(tmp_path):
    conf = np.full(30, 0.95)
    conf[:10] = 0.3
    df = openface_csv(tmp_path / "f.csv", confidence=conf)
    df.loc[12, "AU12_r"] = np.inf
    text = pd.DataFrame(df).to_csv(index=False).replace(",", ", ").replace("inf", "inf")
    (tmp_path / "f.csv").write_text(text)
    out = FaceExtractor().process_sample(Sample("f", "f", {"face": tmp_path / "f.csv"}), None)
    keep = np.ones(30, bool)
    keep[:10] = False
    keep[12] = False
    assert out["valid_fraction"].iloc[0] == pytest.approx(keep.mean())
    assert out["AU01_r__mean"].iloc[0] == pytest.approx(df.loc[keep, "AU01_r"].mean(), rel=1e-5)
    assert any("NaN/inf" in w for w in out.attrs["warnings"])


def test_no_successful_frame_is_an_error(tmp_path):
    openface_csv(tmp_path / "f.csv", success=np.zeros(30, int))
    with pytest.raises(ExtractionError, match="f.csv: no usable frame among 30"):
        FaceExtractor().process_sample(Sample("f", "f", {"face": tmp_path / "f.csv"}), None)


def test_segment_without_frames_gives_nan_and_a_warning(tmp_path):
    openface_csv(tmp_path / "f.csv")
    out = FaceExtractor().process_sample(Sample("f", "f", {"face": tmp_path / "f.csv"}),
                                         [Segment(0, 0.5), Segment(5, 6)])
    assert out["n_frames"].tolist() == [15, 0]
    assert np.isnan(out["AU01_r__mean"].iloc[1])
    assert any("without a usable frame" in w for w in out.attrs["warnings"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ExtractionError, match="has no face features file"):
        read_face_files(Sample("x", "x", {"audio": tmp_path / "a.wav"}))
    (tmp_path / "h.csv").write_text("frame, timestamp, confidence, success\n")
    with pytest.raises(ExtractionError, match="h.csv: no frames"):
        FaceExtractor().process_sample(Sample("h", "h", {"face": tmp_path / "h.csv"}), None)
    (tmp_path / "n.csv").write_text("frame, AU01_r\n1, 0.5\n")
    with pytest.raises(ExtractionError, match="lacks column"):
        FaceExtractor().process_sample(Sample("n", "n", {"face": tmp_path / "n.csv"}), None)


def test_pyfeat_detector_runs_where_weights_exist(shared_data):
    """The detector path needs py-feat's model weights; without them it says how to get them."""
    from features.base import ExtractionError as E

    ext = PyFeatDetectorExtractor(device="cpu")
    try:
        ext.check()
    except E as err:
        if "cannot import py-feat" in str(err):
            pytest.skip(str(err))
        assert "weights" in str(err) and "weights_dir" in str(err)
        pytest.skip(f"py-feat weights unavailable here: {err}")
    image = shared_data / "face_samples" / "single_face.jpg"
    out = ext.process_sample(Sample("img", "img", {"image": image}), None)
    assert out["valid_fraction"].iloc[0] == 1.0 and out.shape[1] == len(ext.feature_names)


# --- DAIC pose headers, py-feat pose units, timestamps ---------------------------------------

def daic_media(folder, pid):
    return {"face_au": folder / f"{pid}_CLNF_AUs.txt", "face_gaze": folder / f"{pid}_CLNF_gaze.txt",
            "face_pose": folder / f"{pid}_CLNF_pose.txt"}


def test_daic_pose_files_with_tx_ty_tz_headers_give_the_same_features(demo_corpus):
    folder = demo_corpus / "300_P"
    media = daic_media(folder, "300")
    documented = FaceExtractor(layout="daic").process_sample(Sample("300", "300", media), None)
    pose = media["face_pose"]
    lines = pose.read_text().splitlines()
    assert lines[0] == "frame, timestamp, confidence, success, X, Y, Z, Rx, Ry, Rz"
    lines[0] = "frame, timestamp, confidence, success, Tx, Ty, Tz, Rx, Ry, Rz"  # real DAIC-WOZ releases
    pose.write_text("\n".join(lines) + "\n")
    real = FaceExtractor(layout="daic").process_sample(Sample("300", "300", media), None)
    pd.testing.assert_frame_equal(real, documented)


def test_a_missing_daic_column_is_blamed_on_its_own_file_in_the_errors_table(demo_corpus, tmp_path):
    from features.align import Segmenter
    from features.runner import run_extraction
    from features.store import FeatureStore
    from fusion.datasets.daic_woz import DaicWoz

    pose = demo_corpus / "301_P" / "301_CLNF_pose.txt"
    lines = pose.read_text().splitlines()
    pose.write_text("\n".join(", ".join(x.split(", ")[:-1]) for x in lines) + "\n")  # no Rz column
    with pytest.raises(ExtractionError, match=r"301_CLNF_pose.txt: .*Rz") as err:
        FaceExtractor(layout="daic").process_sample(Sample("301", "301", daic_media(demo_corpus / "301_P", "301")),
                                                    None)
    assert "301_CLNF_AUs.txt" not in str(err.value) and err.value.path == str(pose)
    au = demo_corpus / "302_P" / "302_CLNF_AUs.txt"
    rows = [x.split(", ") for x in au.read_text().splitlines()]
    drop = rows[0].index("confidence")
    au.write_text("\n".join(", ".join(v for i, v in enumerate(r) if i != drop) for r in rows) + "\n")
    summary = run_extraction(DaicWoz(demo_corpus).samples(), FaceExtractor(layout="daic"),
                             FeatureStore(tmp_path / "store"), "demo", segmenter=Segmenter(), progress=False)
    assert summary.failed_ids == ["301", "302"]
    errors = pd.read_parquet(summary.errors_path).set_index("sample_id")
    assert errors.loc["301", "source_path"] == str(pose)
    assert errors.loc["302", "source_path"] == str(au)
    assert "302_CLNF_AUs.txt" in errors.loc["302", "error"] and "'confidence'" in errors.loc["302", "error"]
    assert "KeyError" not in errors.loc["302", "error"]


def pyfeat_csv(path, n=10, pitch=0.2, extra=None):
    cols = {"frame": np.arange(n), "FaceScore": np.full(n, 0.99), "Pitch": np.full(n, pitch),
            "Roll": np.full(n, -0.1), "Yaw": np.full(n, 0.3)}
    for au in ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14", "AU15",
               "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43"):
        cols[au] = np.full(n, 0.4)
    cols.update(extra or {})
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


def test_pyfeat_pose_is_taken_in_radians(tmp_path):
    path = pyfeat_csv(tmp_path / "p.csv", pitch=0.2)
    out = FaceExtractor(layout="pyfeat").process_sample(Sample("p", "p", {"face": path}), None)
    assert out["pose_Rx__mean"].iloc[0] == pytest.approx(0.2)  # py-feat 2.x: radians, not converted again
    assert out["pose_Ry__mean"].iloc[0] == pytest.approx(0.3) and out["pose_Rz__mean"].iloc[0] == pytest.approx(-0.1)
    assert not [w for w in out.attrs["warnings"] if "degrees" in w]


def test_unparseable_and_shuffled_timestamps_are_warned_about_and_never_give_a_nan_end(tmp_path):
    df = openface_csv(tmp_path / "f.csv")
    shuffled = df.sample(frac=1.0, random_state=0)
    text = shuffled.to_csv(index=False).replace(",", ", ").splitlines()
    bad_rows = [3, 7]
    for i in bad_rows:  # unparseable timestamps
        cells = text[i].split(", ")
        cells[2] = "n/a"
        text[i] = ", ".join(cells)
    (tmp_path / "f.csv").write_text("\n".join(text) + "\n")
    out = FaceExtractor().process_sample(Sample("f", "f", {"face": tmp_path / "f.csv"}), None)
    warnings = " ".join(out.attrs["warnings"])
    assert "2 frame(s) with unparseable timestamps" in warnings and "not in time order" in warnings
    end = out.index.get_level_values("end")[0]
    kept = shuffled.drop(shuffled.index[[i - 1 for i in bad_rows]])
    assert np.isfinite(end) and end == pytest.approx(kept["timestamp"].max() + 1 / 30)
    assert out["n_frames"].iloc[0] == 28
    frames = FaceExtractor(level="frames").process_sample(Sample("f", "f", {"face": tmp_path / "f.csv"}), None)
    starts = frames.index.get_level_values("start").to_numpy()
    assert len(starts) == 28 and (np.diff(starts) > 0).all()
