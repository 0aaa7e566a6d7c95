"""EMOTIC: the synthetic corpus in the native layout, the image extractor (crops, weights, bad
images and boxes), the multi-label metrics, the losses of Kosti et al., and the context model,
which must find categories planted in the scene while the body-only ablation stays at chance."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.cli import main
from fusion.datasets.emotic import CATEGORIES, Emotic, category_column
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model
from fusion.synthetic.emotic_corpus import generate_emotic_corpus

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "test_resnet", "image_size": 64, "batch_size": 64}


def test_average_precision_is_scikit_learns():
    from sklearn.metrics import average_precision_score

    from fusion.evaluation.multilabel import average_precision

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 60))
        y = rng.random(n) < rng.uniform(0.05, 0.9)
        if not y.any():
            y[int(rng.integers(n))] = True
        score = rng.random(n) if trial % 2 else np.round(rng.random(n), 1)  # ties in half the cases
        assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([1, 1], [0.2, 0.2]) == 1.0
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_thresholds_where_precision_equals_recall():
    from fusion.evaluation.multilabel import chance_ap, equal_pr_thresholds, thresholded_f1

    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [1, 0], [0, 0]])
    S = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.9], [0.6, 0.3], [0.5, 0.4], [0.1, 0.5]])
    th = equal_pr_thresholds(Y, S)
    # category 0: the top three scores hold 2 positives of 3 → precision = recall = 2/3 at 0.7
    assert th[0] == pytest.approx(0.7) and th[1] == pytest.approx(0.9)
    np.testing.assert_allclose(thresholded_f1(Y, S, th), [2 / 3, 1.0])
    chance = chance_ap(np.tile(Y, (10, 1)), n_draws=300)
    np.testing.assert_allclose(chance, Y.mean(0), atol=0.05)  # 30 and 10 positives: near the base rate


def test_kosti_losses():
    import torch

    from fusion.lit import Head, head_loss

    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    loss, _ = head_loss(Head("cat", "multilabel", 2, loss="dynamic"), logits, target, None)
    p = target.mean(0)
    w = 1 / torch.log(1.2 + p)
    expected = ((torch.sigmoid(logits) - target) ** 2 * w).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item())
    out = torch.tensor([[5.05, 3.0, 1.0]])
    tgt = torch.tensor([[5.0, 4.0, float("nan")]])
    loss, keep = head_loss(Head("vad", "regression", 3, loss="margin_l2", margin=0.1), out, tgt, None)
    assert keep.tolist() == [[True, True, False]]
    assert loss.item() == pytest.approx((0.0 + 1.0) / 2)  # within the margin: 0; beyond: squared


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_emotic_corpus(tmp_path_factory.mktemp("emotic") / "emotic_root", n_images=300, seed=0)


def test_synthetic_corpus_is_read_alike_from_both_annotation_formats(corpus):
    mat, csv = Emotic(corpus, annotations="mat").labels(), Emotic(corpus, annotations="csv").labels()
    cols = [category_column(c) for c in CATEGORIES] + ["valence", "arousal", "dominance", "bbox_x1", "bbox_y2"]
    assert len(mat) == len(csv) > 300
    np.testing.assert_array_equal(mat[cols].to_numpy(float), csv[cols].to_numpy(float))
    assert set(mat["split"]) == {"train", "val", "test"}
    assert all(s.media["image"].suffix == ".jpg" and s.media["image"].exists() for s in Emotic(corpus).samples())
    # every category occurs, and people of one image share the subject (the image)
    assert (mat[[category_column(c) for c in CATEGORIES]].sum() > 0).all()
    assert mat.groupby("subject_id").size().max() > 1


def test_image_extractor_records_bad_images_and_boxes(corpus, tmp_path):
    import shutil

    from features.image import ImageEmbeddingExtractor

    root = tmp_path / "e"
    shutil.copytree(corpus, root)
    ds = Emotic(root)
    samples = {s.sample_id: s for s in ds.samples()}
    ids = list(samples)
    # a corrupt JPEG, a box outside the image, a zero-area box, a box over the edge
    broken = samples[ids[0]].media["image"]
    broken.write_bytes(broken.read_bytes()[:200])
    others = [i for i in ids if samples[i].media["image"] != broken]
    edit = {others[0]: (500, 500, 600, 600), others[1]: (20, 20, 20, 60), others[2]: (-30, 10, 40, 70)}
    from dataclasses import replace

    for sid, (x1, y1, x2, y2) in edit.items():
        samples[sid] = replace(samples[sid], labels={**samples[sid].labels, "bbox_x1": x1, "bbox_y1": y1,
                                                     "bbox_x2": x2, "bbox_y2": y2})
    ex = ImageEmbeddingExtractor(crop="body", **TINY)
    res = ex.process_samples([(samples[i], None) for i in ids[:40]])
    assert "not a readable image" in str(res.errors[ids[0]]) and str(broken) in str(res.errors[ids[0]])
    assert "outside the 160×120 image" in str(res.errors[others[0]])
    assert "zero area" in str(res.errors[others[1]])
    assert others[2] not in res.errors and any("clipped" in w for w in res.warnings[others[2]])
    kept = set(res.frame.index.get_level_values(0))
    assert kept == set(ids[:40]) - set(res.errors) and len(kept) >= 35
    assert res.frame.shape[1] == len(ex.feature_names) and np.isfinite(res.frame.to_numpy()).all()
    assert any("random initialisation" in w for w in res.warnings[others[2]])
    # the whole image needs no box; the face crop needs face boxes, which EMOTIC lacks
    ctx = ImageEmbeddingExtractor(crop="context", **TINY).process_samples([(samples[others[0]], None)])
    assert not ctx.errors
    face = ImageEmbeddingExtractor(crop="face", **TINY).process_samples([(samples[others[3]], None)])
    assert "no face box" in str(face.errors[others[3]])


def test_backbone_weights_from_a_local_file(corpus, tmp_path):
    from safetensors.torch import save_file

    from features.base import ExtractionError
    from features.image import ImageEmbeddingExtractor, load_backbone

    model = load_backbone("test_resnet", None, 0, "cpu")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    sample = Emotic(corpus).samples()[0]
    seeded = ImageEmbeddingExtractor(crop="body", seed=0, **TINY).process_samples([(sample, None)])
    loaded = ImageEmbeddingExtractor(crop="body", seed=5, weights=str(path), **TINY).process_samples([(sample, None)])
    other = ImageEmbeddingExtractor(crop="body", seed=5, **TINY).process_samples([(sample, None)])
    np.testing.assert_allclose(loaded.frame.to_numpy(), seeded.frame.to_numpy(), atol=1e-5)
    assert not np.allclose(other.frame.to_numpy(), seeded.frame.to_numpy())
    assert not any("random" in w for w in loaded.warnings[sample.sample_id])
    with pytest.raises(ExtractionError, match="do not fit resnet18"):
        ImageEmbeddingExtractor(backbone="resnet18", weights=str(path)).check()
    with pytest.raises(ExtractionError, match="unknown timm backbone"):
        ImageEmbeddingExtractor(backbone="no_such_net").check()
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"anything")
    with pytest.raises(ExtractionError, match=r"\.safetensors files only \(never unpickled\)"):
        ImageEmbeddingExtractor(backbone="test_resnet", weights=str(pth), seed=9).check()


def test_context_model_saves_loads_and_masks_missing_streams(tmp_path):
    from fusion.models.context_fusion import ContextFusion

    rng = np.random.default_rng(0)
    n = 120
    ctx = rng.normal(size=(n, 6))
    Y = (ctx[:, :3] > 0).astype(float)
    V = 5 + ctx[:, 3:6]
    blocks = {"body": rng.normal(size=(n, 4)), "context": ctx}
    blocks["body"][:10] = np.nan  # persons without a body crop
    tr, va = np.arange(90), np.arange(90, n)
    targets = Targets.multilabel(Y, V)
    model = ContextFusion(hidden=16, max_epochs=30, patience=5, batch_size=32, lr=3e-3, fusion="attention").fit(
        {k: v[tr] for k, v in blocks.items()}, targets.rows(tr),
        val=({k: v[va] for k, v in blocks.items()}, targets.rows(va)))
    heads = model.predict_heads(blocks)
    P, Vh = heads["multilabel"], heads["continuous"]
    assert P.shape == (n, 3) and Vh.shape == (n, 3) and np.isfinite(P).all()
    assert ((P > 0) & (P < 1)).all() and model.thresholds_.shape == (3,)
    np.testing.assert_array_equal(model.predict(blocks), (model.thresholds_ <= P).astype(int))
    loaded = load_model(save_model(model, tmp_path / "m"))
    again = loaded.predict_heads(blocks)
    np.testing.assert_allclose(again["multilabel"], P, atol=1e-6)
    np.testing.assert_allclose(again["continuous"], Vh, atol=1e-5)
    none = {k: v.copy() for k, v in blocks.items()}
    none["context"][0] = np.nan
    none["body"][0] = np.nan
    assert np.isnan(loaded.predict_proba(none)[0]).all()  # a person with no stream gets no estimate
    (weights,) = (tmp_path / "m").glob("*.safetensors")
    weights.unlink()
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "m")


@pytest.mark.slow
def test_context_model_finds_the_scene_and_the_body_alone_does_not(corpus, tmp_path, capsys):
    """The proof on the synthetic corpus: `make extract` then `make train` with the EMOTIC
    configs (a tiny backbone), on CPU in well under a minute."""
    store = tmp_path / "store"
    tiny = [a for k, v in TINY.items() for crop in ("body", "context")
            for a in ("--set", f"features.{crop}.extractor.params.{k}={v}")]
    assert main(["extract", "--config", str(ROOT / "configs/extract/emotic.yaml"), "--set", f"dataset.root={corpus}",
                 "--set", f"store={store}", "--set", "progress=false", "--only", "body", "--only", "context",
                 *tiny]) == 0
    out = tmp_path / "s.json"
    assert main(["train", "--config", str(ROOT / "configs/train/emotic.yaml"),
                 "--set", f"extract.dataset.root={corpus}", "--set", f"extract.store={store}",
                 *[a if not a.startswith("features.") else "extract." + a for a in tiny],
                 "--set", "cv.seeds=[0]", "--set", "evaluation.n_bootstrap=100",
                 "--set", f"output_dir={tmp_path / 'out'}", "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}",
                 "--set", f"tracking.artifacts={tmp_path / 'art'}", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    m = s["targets"]["emotion"]["metrics"]
    chance = m["chance"]["mAP"]["mean"]
    assert m["model"]["mAP"]["mean"] > 0.6 and m["only:context"]["mAP"]["mean"] > 0.6
    assert m["only:body"]["mAP"]["mean"] < chance + 0.06, (m["only:body"], chance)
    assert m["model"]["mae_valence"]["mean"] < s["targets"]["emotion"]["metrics"]["mean predictor"]["mae_valence"]["mean"]
    run = Path(s["outputs"]["dir"])
    per = pd.read_csv(run / "emotion_per_category.csv")
    assert len(per) == 26 and {"ap_mean", "chance_ap", "threshold", "f1_at_threshold"} <= set(per.columns)
    model = load_model(Path(s["model_dir"]) / "emotion")
    assert model.modalities == ["body", "context"] and len(model.thresholds_) == 26

    # VAD-mixture soft labels as a third head: the scene's VAD gives its distribution over
    # basic and compound emotions, learned well beyond the training mean distribution
    out = tmp_path / "mix.json"
    assert main(["train", "--config", str(ROOT / "configs/train/emotic_vad_mixture.yaml"),
                 "--set", f"extract.dataset.root={corpus}", "--set", f"extract.store={store}",
                 *[a if not a.startswith("features.") else "extract." + a for a in tiny],
                 "--set", "cv.seeds=[0]", "--set", "evaluation.n_bootstrap=0", "--set", "evaluation.ablation=false",
                 "--set", f"output_dir={tmp_path / 'out'}", "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}",
                 "--set", f"tracking.artifacts={tmp_path / 'art'}", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    m = s["targets"]["emotion"]["metrics"]
    assert m["model"]["js_mixture"]["mean"] < 0.7 * m["mean predictor"]["js_mixture"]["mean"], m
    assert m["model"]["mAP"]["mean"] > 0.6
    assert len(s["targets"]["emotion"]["vad_mixture"]["names"]) == 13
    pred = pd.read_csv(Path(s["outputs"]["dir"]) / "emotion_predictions.csv")
    assert {"mix_happy_seed0", "mix_happy_label", "mix_sadly angry_seed0"} <= set(pred.columns)
    assert load_model(Path(s["model_dir"]) / "emotion").mixture_["names"][0] == "happy"
    # ratings outside the declared scale stop the run before training, naming a sample
    assert main(["train", "--config", str(ROOT / "configs/train/emotic_vad_mixture.yaml"),
                 "--set", f"extract.dataset.root={corpus}", "--set", f"extract.store={store}",
                 *[a if not a.startswith("features.") else "extract." + a for a in tiny],
                 "--set", "targets.emotion.vad_mixture.scale=[1, 7]", "--set", f"output_dir={tmp_path / 'out'}",
                 "--set", "tracking.enabled=false"]) == 2
    assert re.search(r"vad_mixture: sample '.+' has \{.+\}, outside vad_mixture.scale 1–7",
                     capsys.readouterr().err)


def test_report_says_it_does_not_report_multilabel_models(tmp_path, capsys):
    from fusion.models.context_fusion import ContextFusion

    rng = np.random.default_rng(0)
    X = {"context": rng.normal(size=(40, 3))}
    model = ContextFusion(hidden=4, max_epochs=1).fit(X, Targets.multilabel((X["context"] > 0).astype(float)))
    save_model(model, tmp_path / "model" / "emotion")
    assert main(["report", "--model", str(tmp_path / "model"), "--participant", "x", "--no-pdf"]) == 2
    assert "multi-label model" in capsys.readouterr().err


def test_augmentation_keeps_the_crop_shape_and_is_seeded():
    from fusion.models.context_finetune import augment

    arr = np.random.default_rng(0).normal(size=(3, 32, 32)).astype(np.float32)
    a = augment(arr, np.random.default_rng(1))
    assert a.shape == arr.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, augment(arr, np.random.default_rng(1)))
    assert not np.allclose(a, augment(arr, np.random.default_rng(2)))


def test_end_to_end_model_fits_saves_loads_and_masks_unusable_crops(corpus, tmp_path):
    from safetensors.torch import save_file

    from features.image import load_backbone
    from fusion.models.context_finetune import ContextFinetune, ImageRows

    ds = Emotic(corpus)
    lab, samples = ds.labels(), ds.samples()
    cats = [category_column(c) for c in CATEGORIES]
    Y, V = lab[cats].to_numpy(float), lab[["valence", "arousal", "dominance"]].to_numpy(float)
    rows = ImageRows(samples[:60], {"body": {"crop": "body"}, "context": {"crop": "context"}})
    w = tmp_path / "body.safetensors"
    save_file({k: v.contiguous() for k, v in load_backbone("test_resnet", None, 3, "cpu").state_dict().items()}, str(w))
    model = ContextFinetune(backbone="test_resnet", image_size=32, hidden=8, max_epochs=2, patience=2, batch_size=16,
                            weights={"body": str(w)})
    from fusion.datasets.vad_mixture import VadMixture

    mix = VadMixture.build("basic", scale=(1, 10))
    M = mix(V)
    targets = Targets.multilabel(Y[:60], V[:60], M[:60], mix.to_dict())
    model.fit(rows.take(range(40)), targets.rows(np.arange(40)), val=(rows.take(range(40, 60)),
                                                                    targets.rows(np.arange(40, 60))))
    heads = model.predict_heads(rows)
    P, Vh, Mh = heads["multilabel"], heads["continuous"], heads["distribution"]
    assert P.shape == (60, 26) and Vh.shape == (60, 3) and np.isfinite(P).all()
    assert Mh.shape == (60, 6) and np.allclose(Mh.sum(1), 1)  # the VAD-mixture head, end to end too
    loaded = load_model(save_model(model, tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(rows), P, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_heads(rows)["distribution"], Mh, atol=1e-6)
    # a person whose image cannot be read has no stream: no estimate, and no crash
    bad = samples[0].media["image"]
    bad.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"crop of sample .* left out \(masked\): .*not a readable image"):
        assert np.isnan(loaded.predict_proba(rows.take([0]))).all()
    with pytest.raises(ValueError, match="weights given for stream 'face'"):
        ContextFinetune(backbone="test_resnet", image_size=32, max_epochs=1, weights={"face": str(w)}).fit(
            rows.take(range(1, 10)), Targets.multilabel(Y[1:10]))


@pytest.mark.slow
def test_end_to_end_training_through_fusion_train(tmp_path):
    """`fusion train --config configs/train/emotic_finetune.yaml`: the backbones fine-tuned on
    the images (tiny backbone and images, a few epochs, on CPU) find the scene's categories."""
    corpus = generate_emotic_corpus(tmp_path / "e", n_images=300, seed=0)
    out = tmp_path / "s.json"
    assert main(["train", "--config", str(ROOT / "configs/train/emotic_finetune.yaml"),
                 "--set", f"extract.dataset.root={corpus}", "--set", "model.params.backbone=test_resnet",
                 "--set", "model.params.image_size=64", "--set", "model.params.max_epochs=8",
                 "--set", "model.params.num_workers=0", "--set", "model.params.lr=0.003",
                 "--set", "evaluation.n_bootstrap=50", "--set", f"output_dir={tmp_path / 'out'}",
                 "--set", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "--set", f"tracking.artifacts={tmp_path / 'a'}",
                 "--json", str(out)]) == 0
    m = json.loads(out.read_text())["targets"]["emotion"]["metrics"]
    assert m["model"]["mAP"]["mean"] > m["chance"]["mAP"]["mean"] + 0.3
