"""Dataset adapters on fixtures written in each corpus's native layout, quirks included."""

from __future__ import annotations

import pandas as pd
import pytest
from fixtures import write_cexpr, write_daic_extras, write_edaic, write_emotic_csv, write_emotic_mat

from fusion.datasets.base import DatasetError
from fusion.datasets.c_expr_db import CexprDb
from fusion.datasets.combined import Combined
from fusion.datasets.daic_woz import DaicWoz
from fusion.datasets.e_daic import Edaic
from fusion.datasets.emotic import Emotic, category_column
from fusion.datasets.folder import Folder
from fusion.datasets.labels import phq8_severity, ptsd_class


def test_severity_bins():
    assert [phq8_severity(s) for s in (0, 4, 5, 9, 10, 14, 15, 19, 20, 24)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [ptsd_class(s) for s in (17, 20, 21, 40, 41, 85)] == [0, 0, 1, 1, 2, 2]
    assert ptsd_class(30, bins=[33, 50]) == 0
    with pytest.raises(ValueError, match="0–24"):
        phq8_severity(25)


def test_daic_native_layout_and_quirks(demo_corpus):
    write_daic_extras(demo_corpus)
    ds = DaicWoz(demo_corpus)
    labels = ds.labels()
    assert set(labels["split"]) == {"train", "dev", "test"}
    test = labels[labels["split"] == "test"]
    assert len(test) == 1 and test["PHQ8_Score"].notna().all()  # from full_test_split.csv
    assert (labels["PHQ8_Severity"] == labels["PHQ8_Score"].map(phq8_severity)).all()
    assert labels.loc[labels["split"] != "test", "PTSD_Class"].isin([0, 1, 2]).all()
    sample = ds.samples()[0]
    assert {"covarep", "formant", "face_landmarks", "audio", "transcript", "face_au"} <= set(sample.media)
    problems = "\n".join(ds.problems)
    assert "participant 342 (train) has no folder 342_P (known to be excluded" in problems
    assert "PHQ8_Sleep" in problems and "missing in the split file" in problems
    covarep = pd.read_csv(sample.media["covarep"], header=None)
    assert covarep.shape[1] == 74


@pytest.mark.parametrize("damage,match", [
    (lambda r: (r / "train_split_Depression_AVEC2017.csv").write_text(
        (r / "train_split_Depression_AVEC2017.csv").read_text().replace("Participant_ID", "Participant")),
     "no Participant_ID column"),
    (lambda r: (r / "train_split_Depression_AVEC2017.csv").write_text(
        (r / "train_split_Depression_AVEC2017.csv").read_text() + "999,1,31,1,3,3,3,3,3,3,3,3,40,0\n"),
     "column 'PHQ8_Score' must be an integer in 0–24"),
    (lambda r: (r / "dev_split_Depression_AVEC2017.csv").write_text(
        (r / "dev_split_Depression_AVEC2017.csv").read_text() +
        (r / "train_split_Depression_AVEC2017.csv").read_text().splitlines()[1] + "\n"),
     "listed in both the train and the dev split files"),
])
def test_daic_bad_label_files_name_file_and_column(demo_corpus, damage, match):
    damage(demo_corpus)
    with pytest.raises(DatasetError, match=match):
        DaicWoz(demo_corpus).samples()


def test_edaic_native_layout(tmp_path):
    root = write_edaic(tmp_path / "edaic")
    ds = Edaic(root)
    labels = ds.labels()
    assert len(labels) == 6 and labels.loc["602", "split"] == "test"
    assert {"PHQ8_Score", "PHQ8_Binary", "PHQ8_Severity", "PTSD Severity", "PTSD_Class", "PTSD_Binary",
            "PHQ_8NoInterest"} <= set(labels.columns)
    s = {x.sample_id: x for x in ds.samples()}["300"]
    assert set(s.media) == {"audio", "transcript", "face", "egemaps_lld"}
    from features.align import read_transcript
    t = read_transcript(s.media["transcript"])
    assert t["speaker"].isna().all() and len(t) == 3
    lld = pd.read_csv(s.media["egemaps_lld"], sep=";")
    assert list(lld.columns[:2]) == ["name", "frameTime"]


def test_edaic_label_out_of_range_and_missing_column(tmp_path):
    root = write_edaic(tmp_path / "edaic")
    path = root / "labels" / "dev_split.csv"
    df = pd.read_csv(path)
    df.loc[0, "PTSD Severity"] = 120
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="dev_split.csv: column 'PTSD Severity' must be a number in 0–85"):
        Edaic(root).samples()
    df.drop(columns=["PHQ_Score"]).to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"dev_split.csv: missing column\(s\) \['PHQ_Score'\]"):
        Edaic(root).samples()


def test_daic_and_edaic_combined_share_subjects(demo_corpus, tmp_path):
    edaic = write_edaic(tmp_path / "edaic")
    ds = Combined(tmp_path, datasets=[{"name": "daic-woz", "root": str(demo_corpus)},
                                      {"name": "e-daic", "root": str(edaic)}])
    labels = ds.labels()
    assert "daic-woz:300" in labels.index and "e-daic:300" in labels.index
    assert labels.loc["daic-woz:300", "subject_id"] == labels.loc["e-daic:300", "subject_id"]
    assert any("appear in more than one corpus" in p for p in ds.problems)
    from fusion.evaluation.splits import SplitConfig, make_folds
    y = labels["PHQ8_Binary"].fillna(0).astype(int).to_numpy()
    for fold in make_folds(SplitConfig(n_splits=3, n_repeats=2), y, labels["subject_id"].to_numpy()):
        train_subjects = set(labels["subject_id"].to_numpy()[fold.train])
        test_subjects = set(labels["subject_id"].to_numpy()[fold.test])
        assert not train_subjects & test_subjects


@pytest.mark.parametrize("writer,mode", [(write_emotic_mat, "mat"), (write_emotic_csv, "csv")])
def test_emotic_both_annotation_formats(tmp_path, writer, mode):
    root = writer(tmp_path / "emotic_root")
    ds = Emotic(root, annotations=mode)
    labels = ds.labels()
    train = labels[labels["split"] == "train"]
    assert len(train) == (3 if mode == "mat" else 2)
    first = train.iloc[0]
    assert first[category_column("Happiness")] == 1 and first[category_column("Peace")] == 1
    assert first[category_column("Anger")] == 0
    assert (first["valence"], first["arousal"], first["dominance"]) == (8, 4, 7)
    assert (first["bbox_x1"], first["bbox_y2"]) == (10, 400)
    assert first["gender"] == "Male" and first["age"] == "Adult"
    # two people in one image share the subject (the image)
    assert train.iloc[0]["subject_id"] == train.iloc[1]["subject_id"]
    val = labels[labels["split"] == "val"].iloc[0]
    assert val[category_column("Engagement")] == 1 and val["valence"] == 6  # combined annotations
    assert all(s.media["image"].exists() for s in ds.samples())
    # 700 > 640: clipped to the image, with a note
    if mode == "mat":
        assert labels.iloc[1]["bbox_x2"] == 640 and any("clipped" in p for p in ds.problems)


def test_emotic_bad_values(tmp_path):
    root = write_emotic_csv(tmp_path / "e")
    df = pd.read_csv(root / "val.csv")
    df.loc[0, "Continuous_Labels"] = "[11, 7, 6]"
    df.to_csv(root / "val.csv", index=False)
    with pytest.raises(DatasetError, match=r"val.csv: .*continuous labels \{'valence': 11.0\} outside 1–10"):
        Emotic(root).samples()
    df.loc[0, "Continuous_Labels"] = "[6, 7, 6]"
    df.loc[0, "Categorical_Labels"] = "['Joy']"
    df.to_csv(root / "val.csv", index=False)
    with pytest.raises(DatasetError, match=r"unknown categories \['Joy'\]"):
        Emotic(root).samples()


def test_cexpr_segment_and_frame_annotations(tmp_path):
    root = write_cexpr(tmp_path / "cexpr")
    ds = CexprDb(root, fps=30)
    labels = ds.labels()
    assert len(labels) == 5  # 2 + 1 CSV segments (Other left out) + 2 runs of frames
    seg = {s.sample_id: s for s in ds.samples()}
    first = seg["12-24-1920x1080_000"]
    assert first.span == (1.2, 3.0) and first.labels["expression"] == "Happily Surprised"
    assert first.media["video"].name == "12-24-1920x1080.mp4" and first.subject_id == "12-24-1920x1080"
    runs = [s for s in ds.samples() if s.subject_id == "7"]
    assert [(s.labels["expression"], s.span) for s in runs] == [
        ("Fearfully Surprised", (0.1, 1.1)), ("Sadly Angry", (1.1, 1.6))]
    assert any("Other left out" in p for p in ds.problems)
    assert CexprDb(root, include_other=True).labels()["expression"].eq("Other").sum() == 1


def test_cexpr_bad_annotations(tmp_path):
    root = write_cexpr(tmp_path / "cexpr")
    path = root / "annotation" / "12-24-1920x1080.csv"
    df = pd.read_csv(path)
    df.loc[1, "End Time - hh:mm:ss.ms"] = "00:00:03.000"  # before its begin time
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="12-24-1920x1080.csv: line 3: end time 3.000 s is not after"):
        CexprDb(root).samples()
    df.loc[1, "End Time - hh:mm:ss.ms"] = "00:00:06.500"
    df.loc[1, "Sadly Angry"] = 1
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="line 3: expected exactly one expression column set to 1, found 2"):
        CexprDb(root).samples()


def test_folder_adapter(tmp_path):
    from fixtures import tone, write_wav
    write_wav(tmp_path / "audio" / "a.wav", tone(1.0))
    write_wav(tmp_path / "audio" / "b.wav", tone(1.0))
    pd.DataFrame({"sample_id": ["a", "b", "c"], "subject_id": ["p1", "p1", "p2"],
                  "path": ["audio/a.wav", "audio/b.wav", "audio/missing.wav"],
                  "mood": ["low", "high", "low"], "score": [3, 12, 7], "split": ["train", "train", "test"]}
                 ).to_csv(tmp_path / "labels.csv", index=False)
    ds = Folder(tmp_path, labels={"mood": {"values": ["low", "high"]}, "score": {"min": 0, "max": 24}})
    labels = ds.labels()
    assert list(labels.columns) == ["subject_id", "split", "group", "mood", "score"]
    samples = {s.sample_id: s for s in ds.samples()}
    assert samples["a"].media["audio"].name == "a.wav" and samples["c"].media == {}
    assert any("missing.wav not found" in p for p in ds.problems)
    with pytest.raises(DatasetError, match=r"column 'score' must be a number in \[0.0, 10.0\]; line\(s\) \[3\]"):
        Folder(tmp_path, labels={"score": {"min": 0, "max": 10}}).samples()
    pd.read_csv(tmp_path / "labels.csv").assign(sample_id=["a", "a", "c"]).to_csv(tmp_path / "labels.csv",
                                                                                  index=False)
    with pytest.raises(DatasetError, match=r"duplicated sample_id \['a'\]"):
        Folder(tmp_path).samples()


def test_transcript_times_running_backwards_is_reported(demo_corpus):
    from features.align import SegmentationConfig, Segmenter
    t = demo_corpus / "300_P" / "300_TRANSCRIPT.csv"
    lines = t.read_text().splitlines()
    start, stop, *rest = lines[3].split("\t")
    lines[3] = "\t".join([stop, start, *rest])
    t.write_text("\n".join(lines) + "\n")
    sample = next(s for s in DaicWoz(demo_corpus).samples() if s.sample_id == "300")
    from features.base import ExtractionError
    with pytest.raises(ExtractionError, match=r"300_TRANSCRIPT.csv: end time before start time in line 4"):
        Segmenter(SegmentationConfig(level="turn")).segment(sample)


def test_missing_root_and_empty_corpus(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        DaicWoz(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no sessions found"):
        DaicWoz(tmp_path).samples()


# --- labels that are not what their column means ---------------------------------------------

def _edit_daic_split(root, column, value, row=0):
    path = root / "train_split_Depression_AVEC2017.csv"
    df = pd.read_csv(path)
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column,value,match", [
    ("PTSD Severity", "high", r"column 'PTSD Severity' must be a number in 0–85.*line 2.*'high'"),
    ("PCL-C (PTSD)", 2, r"column 'PCL-C \(PTSD\)' must be 0 or 1.*line 2.*2"),
    ("PHQ8_Score", 12.5, r"column 'PHQ8_Score' must be an integer in 0–24.*line 2.*12.5"),
    ("PHQ8_NoInterest", 9, r"column 'PHQ8_NoInterest' must be an integer in 0–3.*line 2.*9"),
    ("Participant_ID", 300.7, r"column 'Participant_ID' must be an integer.*line 2.*300.7"),
])
def test_daic_labels_out_of_their_meaning_are_errors_naming_file_column_and_line(demo_corpus, column, value, match):
    path = _edit_daic_split(demo_corpus, column, value)
    with pytest.raises(DatasetError, match=match) as err:
        DaicWoz(demo_corpus).samples()
    assert path.name in str(err.value)


def test_a_binary_label_contradicting_the_score_is_an_error(demo_corpus):
    path = demo_corpus / "train_split_Depression_AVEC2017.csv"
    df = pd.read_csv(path)
    df.loc[1, "PHQ8_Binary"] = 1 - int(df.loc[1, "PHQ8_Score"] >= 10)
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"PHQ8_Binary.*contradicts 'PHQ8_Score'.*line 3"):
        DaicWoz(demo_corpus).samples()


def test_edaic_pcl_and_severity_are_checked_too(tmp_path):
    root = write_edaic(tmp_path / "edaic")
    path = root / "labels" / "train_split.csv"
    df = pd.read_csv(path)
    df["PTSD Severity"] = df["PTSD Severity"].astype(object)
    df.loc[0, "PTSD Severity"] = "high"
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"train_split.csv: column 'PTSD Severity' must be a number"):
        Edaic(root).samples()


def test_combined_corpora_with_differently_coded_gender_are_described(demo_corpus, tmp_path):
    edaic = write_edaic(tmp_path / "edaic")  # Gender: male / female; the DAIC demo: 0 / 1
    ds = Combined(tmp_path, datasets=[{"name": "daic-woz", "root": str(demo_corpus)},
                                      {"name": "e-daic", "root": str(edaic)}])
    d = ds.describe()
    assert set(d["labels"]["Gender"]) == {"female", "male"}  # DAIC-WOZ's codes decoded by its codebook
    daic = DaicWoz(demo_corpus).labels()["Gender"]
    combined = ds.labels()["Gender"]
    for sid, code in daic.items():
        assert combined[f"daic-woz:{sid}"] == {0: "female", 1: "male"}[int(code)]
    assert not any("Gender" in p for p in ds.problems)
    # a corpus whose codes no codebook documents: kept as text, and said so
    from fusion.datasets.daic_woz import DaicWoz as Daic

    book, Daic.codebook = Daic.codebook, {}
    try:
        ds = Combined(tmp_path, datasets=[{"name": "daic-woz", "root": str(demo_corpus)},
                                          {"name": "e-daic", "root": str(edaic)}])
        values = set(ds.describe()["labels"]["Gender"])
        assert values & {"0", "1"} and values <= {"0", "1", "female", "male"}
        assert any("Gender" in p and "no codebook" in p for p in ds.problems)
    finally:
        Daic.codebook = book


def test_test_labels_from_full_test_split_are_reported(demo_corpus):
    write_daic_extras(demo_corpus)
    ds = DaicWoz(demo_corpus)
    ds.samples()
    assert any("full_test_split.csv" in p and "test" in p for p in ds.problems)
