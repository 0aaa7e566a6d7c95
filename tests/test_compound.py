"""Compound expressions on a synthetic corpus in the C-EXPR-DB layout: windows of face and voice
features, window fusion with cross-attention between the modalities, each modality alone far
below both together (each carries only one component of the compound)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusion.cli import main
from fusion.datasets.c_expr_db import COMPOUND, CexprDb
from fusion.models.targets import Targets
from fusion.synthetic.cexpr_corpus import COMPONENTS, generate_cexpr_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("cexpr")
    root = generate_cexpr_corpus(base / "cexpr", n_videos=60, seed=0)
    assert main(["extract", "--config", str(ROOT / "configs/extract/cexpr.yaml"), "--set", f"dataset.root={root}",
                 "--set", f"store={base / 'store'}", "--set", "progress=false",
                 "--only", "face_window", "--only", "egemaps_window", "--only", "text_window"]) == 0
    return root, base / "store"


def test_the_synthetic_corpus_is_read_in_the_c_expr_db_layout(corpus):
    root, _ = corpus
    ds = CexprDb(root)
    samples = ds.samples()
    assert not ds.problems and len({s.subject_id for s in samples}) == 60
    assert all({"audio", "face"} <= set(s.media) and s.span[1] > s.span[0] for s in samples)
    with_text = {s.subject_id for s in samples if "transcript" in s.media}
    assert len(with_text) == 30  # half of the videos have a timed transcript
    counts = ds.labels()["expression"].value_counts()
    assert set(counts.index) == set(COMPOUND) and counts.max() - counts.min() <= 1
    # every compound is a distinct (face, voice) pair; no single component identifies it
    assert len(set(COMPONENTS.values())) == len(COMPOUND)
    assert len({f for f, _ in COMPONENTS.values()}) < len(COMPOUND) > len({v for _, v in COMPONENTS.values()})


def test_both_modalities_together_beat_each_alone(corpus, tmp_path):
    root, store = corpus
    out = tmp_path / "s.json"
    assert main(["train", "--config", str(ROOT / "configs/train/compound.yaml"),
                 "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
                 "--set", "cv.n_splits=3", "--set", "cv.n_repeats=1", "--set", "model.params.max_inner=1",
                 "--set", "evaluation.baselines={}", "--set", "evaluation.n_bootstrap=50",
                 "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "--set", f"tracking.artifacts={tmp_path / 'a'}",
                 "--set", f"output_dir={tmp_path / 'out'}", "--json", str(out)]) == 0
    t = json.loads(out.read_text())["targets"]["expression"]
    m = t["metrics"]
    both = m["model"]["f1_macro"]["mean"]
    assert m["model"]["uar"]["mean"] > 0.6 and both > 0.6
    for alone in ("window:face", "window:voice"):
        assert m[alone]["f1_macro"]["mean"] < both - 0.15, alone
    assert t["classes"] == COMPOUND and np.asarray(t["confusion"]).shape == (7, 7)
    import pandas as pd

    per_video = pd.read_csv(Path(json.loads(out.read_text())["outputs"]["dir"]) / "expression_per_group.csv")
    assert len(per_video) == 60 and per_video["n_samples"].sum() == t["n_samples"]
    assert {"accuracy", "f1_macro", "n_windows", "window_accuracy"} <= set(per_video.columns)
    # every window scored with its segment's label (ABAW scores frames)
    w = m["per_window"]
    assert w["n_windows"]["mean"] > 3 * t["n_samples"] and w["f1_macro"]["mean"] > 0.5
    assert w["f1_macro"]["ci_low"] <= w["f1_macro"]["mean"] <= w["f1_macro"]["ci_high"]


def test_text_windows_join_where_a_transcript_exists_and_are_masked_elsewhere(corpus, tmp_path):
    root, store = corpus
    out = tmp_path / "s.json"
    modalities = ("{face: [{features: face_window, pool: sequence, max_len: 16, columns: ['*_r__mean']}], "
                  "voice: [{features: egemaps_window, pool: sequence, max_len: 16}], "
                  "text: [{features: text_window, pool: sequence, max_len: 16}]}")
    assert main(["train", "--config", str(ROOT / "configs/train/compound.yaml"),
                 "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
                 "--set", f"modalities={modalities}", "--set", "cv.n_splits=3", "--set", "cv.n_repeats=1",
                 "--set", "model.params.max_inner=1", "--set", "model.params.max_epochs=15",
                 "--set", "evaluation.baselines={}", "--set", "evaluation.ablation=false",
                 "--set", "evaluation.n_bootstrap=20", "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}",
                 "--set", f"tracking.artifacts={tmp_path / 'a'}", "--set", f"output_dir={tmp_path / 'out'}",
                 "--json", str(out)]) == 0
    t = json.loads(out.read_text())["targets"]["expression"]
    with_text = sum("transcript" in s.media for s in CexprDb(root).samples())
    assert t["modality_available"] == {"face": t["n_samples"], "voice": t["n_samples"], "text": with_text}
    assert with_text < t["n_samples"] and t["metrics"]["model"]["f1_macro"]["mean"] > 0.5


def test_window_probabilities_cover_the_windows_a_modality_has():
    from fusion.evaluation.splits import grouped_kfold
    from fusion.models.window_fusion import WindowFusionModel
    from fusion.synthetic.inconsistency import inconsistency_sessions

    blocks, y = inconsistency_sessions(60, 6, seed=1, min_turns=3)
    inner = grouped_kfold(y, np.arange(60).astype(str), 3, 0)[:1]
    model = WindowFusionModel(hidden=8, heads=2, max_epochs=3, refit=False).fit(blocks, Targets.classes(y, 2), inner=inner)
    proba = model.window_proba(blocks)
    assert WindowFusionModel(hidden=8, heads=2, max_epochs=1, refit=False, window_weight=0).fit(blocks, Targets.classes(y, 2), inner=inner).window_proba(blocks) is None
    present = blocks["audio"].mask | blocks["text"].mask
    assert proba.shape == (60, 6, 2)
    assert np.allclose(proba[present].sum(-1), 1) and np.isnan(proba[~present]).all()


def test_textualised_cues_describe_the_planted_components(corpus):
    """The `textualise` extractor writes what the face and voice show: the surprised face's
    AUs, a sad voice as lower and quieter than the speaker's own; without audio, no voice part."""
    import dataclasses

    from features.registry import build_extractor

    root, _ = corpus
    samples = CexprDb(root).samples()
    ex = build_extractor("textualise", {})
    by_label = {s.labels["expression"]: s for s in samples}
    _, (surprised,) = ex.describe(by_label["Fearfully Surprised"], None)
    assert surprised.startswith("face: strongly") and "jaw drop" in surprised and "outer brow raiser" in surprised
    # against the speaker's whole recording, which may itself be mostly sad: most, not all
    sad_voices = [ex.describe(s, None)[1][0] for s in samples if s.labels["expression"].startswith("Sadly")][:20]
    assert sum("lower pitch" in t or "quieter" in t for t in sad_voices) >= 0.6 * len(sad_voices)
    no_audio = dataclasses.replace(samples[0], media={"face": samples[0].media["face"]})
    spans, texts = ex.describe(no_audio, None)
    assert len(spans) == 1 and "voice" not in texts[0]
    frame = ex.process_samples([(samples[0], None), (dataclasses.replace(samples[1], media={}), None)])
    assert frame.frame.shape == (1, 384) and samples[1].sample_id in frame.errors
