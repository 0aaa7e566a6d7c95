"""VAD-mixture labels: the shipped norms, the Gaussians, the posterior (against SciPy), the
divergences (against SciPy), the errors, and the soft-target head of the context model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, multivariate_normal

from fusion.datasets.vad_mixture import BASIC, COMPOUND, NORMS_FILE, NormsError, VadMixture, read_norms
from fusion.evaluation.multilabel import js_divergence, kl_divergence


def test_shipped_norms_are_the_published_rows():
    rows = list(csv.reader(NORMS_FILE.open()))
    assert rows[0][:11] == ["", "Word", "V.Mean.Sum", "V.SD.Sum", "V.Rat.Sum", "A.Mean.Sum", "A.SD.Sum", "A.Rat.Sum",
                            "D.Mean.Sum", "D.SD.Sum", "D.Rat.Sum"]
    assert len({len(r) for r in rows}) == 1  # every row complete, as in the original file
    norms = read_norms()
    # Warriner, Kuperman & Brysbaert (2013), row 5596 ("happy") and row 10583 ("sad")
    assert norms.loc["happy"].tolist() == [8.47, 1.28, 6.05, 2.13, 7.21, 1.96]
    assert norms.loc["sad"].tolist() == [2.1, 0.91, 3.49, 2.21, 3.84, 2.21]
    assert {w for ws in {**BASIC, **COMPOUND}.values() for w in ws} <= set(norms.index)


def test_posterior_is_the_gaussian_posterior():
    """p(e | x) equals the normalised densities of SciPy's multivariate normals (equal priors),
    after putting an EMOTIC rating (1–10) on the norms' 1–9 scale."""
    mix = VadMixture.build("basic+compound", scale=(1, 10))
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 10, (50, 3))
    P = mix(X)
    Z = 1 + (X - 1) * 8 / 9
    dens = np.column_stack([multivariate_normal(m, np.diag(v)).pdf(Z) for m, v in zip(mix.mean, mix.var, strict=True)])
    np.testing.assert_allclose(P, dens / dens.sum(1, keepdims=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(P.sum(1), 1.0)
    # temperature flattens towards the prior; priors shift the posterior
    flat = VadMixture.build("basic", temperature=1e6, scale=(1, 10))(X[:3])
    np.testing.assert_allclose(flat, 1 / 6, atol=1e-4)
    tilted = VadMixture.build("basic", priors={**{k: 1.0 for k in BASIC}, "sad": 10.0}, scale=(1, 10))(X)
    assert (tilted[:, 1] > VadMixture.build("basic", scale=(1, 10))(X)[:, 1]).all()


def test_compounds_and_basic_emotions_where_they_should_be():
    mix = VadMixture.build("basic+compound", compound="midpoint")
    happy, surprised = mix.names.index("happy"), mix.names.index("surprised")
    hs = mix.names.index("happily surprised")
    np.testing.assert_allclose(mix.mean[hs], (mix.mean[happy] + mix.mean[surprised]) / 2)
    np.testing.assert_allclose(mix.var[hs], (mix.var[happy] + mix.var[surprised]) / 2)
    prod = VadMixture.build("basic+compound", compound="product")
    p = 1 / prod.var[happy] + 1 / prod.var[surprised]
    np.testing.assert_allclose(prod.var[hs], 1 / p)
    np.testing.assert_allclose(prod.mean[hs], (prod.mean[happy] / prod.var[happy]
                                               + prod.mean[surprised] / prod.var[surprised]) / p)
    # on the norms' scale: a rating at the norms' "happy" is most likely happy, at "sad" sad
    for name in ("happy", "sad"):
        assert mix.names[int(np.argmax(mix(mix.mean[[mix.names.index(name)]])))] == name
    # a custom set, two dimensions only (a corpus without dominance)
    va = VadMixture.build({"joy": ["happiness"], "grief": ["sadness"]}, dims=("valence", "arousal"), scale=(-1, 1))
    assert va(np.array([[0.9, 0.3], [-0.9, -0.5]])).argmax(1).tolist() == [0, 1]
    again = VadMixture.from_dict(mix.to_dict())
    np.testing.assert_allclose(again(np.array([[5.0, 5.0, 5.0]])), mix(np.array([[5.0, 5.0, 5.0]])))


def test_missing_ratings_and_errors_say_what_and_where(tmp_path):
    mix = VadMixture.build("basic", scale=(1, 10))
    out = mix(np.array([[5, np.nan, 5], [5, 5, 5]]))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    with pytest.raises(ValueError, match=r"row 1: rating .* outside the scale 1–10"):
        mix(np.array([[5, 5, 5], [11, 5, 5]]))
    with pytest.raises(ValueError, match=r"2 column\(s\), expected 3"):
        mix(np.array([[5, 5]]))
    with pytest.raises(NormsError, match=r"no norms for word\(s\) \['elated'\]"):
        VadMixture.build({"a": ["happy"], "b": ["elated"]})
    bad = tmp_path / "norms.csv"
    bad.write_text("Word,V.Mean.Sum\nhappy,8\n")
    with pytest.raises(NormsError, match=r"norms.csv: missing column"):
        read_norms(bad)
    bad.write_text(NORMS_FILE.read_text().replace("8.47,1.28", "12.0,1.28"))
    with pytest.raises(NormsError, match="'happy' has a valence mean outside 1–9"):
        read_norms(bad)
    with pytest.raises(NormsError, match="no such norms file"):
        read_norms(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown emotion set"):
        VadMixture.build("plutchik")


def test_divergences_are_scipys():
    rng = np.random.default_rng(1)
    P, Q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    np.testing.assert_allclose(js_divergence(P, Q), [jensenshannon(p, q, base=2) ** 2 for p, q in zip(P, Q, strict=True)])
    np.testing.assert_allclose(kl_divergence(P, Q), [entropy(p, q) for p, q in zip(P, Q, strict=True)])
    assert js_divergence(P, P).max() < 1e-12
    np.testing.assert_allclose(js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])), [1.0])
    assert np.isnan(js_divergence(np.array([[np.nan, 1.0]]), np.array([[0.5, 0.5]])))[0]


def test_context_model_learns_planted_distributions(tmp_path):
    """The soft-target head: distributions planted in one stream are learned (test JS well
    below the training mean's), the head survives save / load, and the contract of rows with
    no stream holds for it too."""
    from fusion.models.context_fusion import ContextFusion

    rng = np.random.default_rng(0)
    mix = VadMixture.build("basic+compound", scale=(1, 10))
    n = 600
    Vt = rng.uniform(1, 10, (n, 3))
    M = mix(Vt)
    blocks = {"scene": np.column_stack([Vt + rng.normal(0, 0.3, (n, 3)), rng.normal(size=(n, 5))]),
              "body": rng.normal(size=(n, 4))}
    Y = (rng.random((n, 4)) < 0.3).astype(float)
    tr, va, te = np.arange(400), np.arange(400, 500), np.arange(500, 600)

    def sub(r):
        return {k: b[r] for k, b in blocks.items()}

    from fusion.models.targets import Targets
    from fusion.persist import load_model, save_model

    targets = Targets.multilabel(Y, Vt, M, mix.to_dict())
    model = ContextFusion(hidden=32, max_epochs=60, patience=8, batch_size=64, lr=3e-3).fit(
        sub(tr), targets.rows(tr), val=(sub(va), targets.rows(va)), seed=0)
    pred = model.predict_heads(sub(te))
    js_model = js_divergence(M[te], pred["distribution"]).mean()
    js_mean = js_divergence(M[te], np.tile(M[tr].mean(0), (len(te), 1))).mean()
    assert js_model < 0.5 * js_mean, (js_model, js_mean)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.mixture_["names"] == mix.names
    np.testing.assert_allclose(loaded.predict_heads(sub(te))["distribution"], pred["distribution"], atol=1e-6)
    none = {k: np.full_like(b[:2], np.nan) for k, b in sub(te).items()}
    assert np.isnan(loaded.predict_heads(none)["distribution"]).all()


def test_labels_command_writes_every_good_sample_and_names_the_bad(tmp_path, capsys):
    """`fusion data vad-mixture` on a corpus with VAD (the synthetic EMOTIC): a CSV of
    distributions; ratings outside the scale are named and left empty, the others written."""
    import pandas as pd

    from fusion.cli import main
    from fusion.synthetic.emotic_corpus import generate_emotic_corpus

    root = generate_emotic_corpus(tmp_path / "e", n_images=40, seed=0)
    cfg = str(Path(__file__).resolve().parents[1] / "configs/data/emotic.yaml")
    out = tmp_path / "mix.csv"
    assert main(["data", "vad-mixture", "--config", cfg, "--set", f"dataset.root={root}", "--out", str(out)]) == 0
    table = pd.read_csv(out, index_col="sample_id")
    names = VadMixture.build().names
    assert {"subject_id", "split", "valence", "vad_mixture_top", *names} <= set(table.columns)
    np.testing.assert_allclose(table[names].sum(axis=1), 1.0)
    again = VadMixture.build(scale=(1, 10))(table[["valence", "arousal", "dominance"]].to_numpy())
    np.testing.assert_allclose(table[names].to_numpy(), again)
    # a scale that does not hold every rating: those samples are named, every other one kept
    assert main(["data", "vad-mixture", "--config", cfg, "--set", f"dataset.root={root}", "--scale", "1", "7",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    bad = table.index[(table[["valence", "arousal", "dominance"]] > 7).any(axis=1)]
    assert len(bad) and all(f"sample {b}:" in err for b in bad)
    table = pd.read_csv(out, index_col="sample_id")
    assert table.loc[bad, names].isna().all().all() and table.drop(bad)[names].notna().all().all()
    # a column the dataset does not have: named, with the dataset and the config
    assert main(["data", "vad-mixture", "--config", cfg, "--set", f"dataset.root={root}", "--columns", "valence",
                 "pleasure", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "dataset emotic at" in err and "emotic.yaml" in err and "['pleasure'] not in the dataset's labels" in err
    assert not (tmp_path / "x.csv").exists()


def test_config_says_where_vad_mixture_belongs():
    from pydantic import ValidationError

    from fusion.config.schema import TargetSpec

    ok = TargetSpec(label="cat_*", kind="multilabel", continuous=["valence", "arousal", "dominance"],
                    vad_mixture={"emotions": "basic", "scale": [1, 10]})
    assert ok.vad_mixture.build(ok.continuous).names == list(BASIC)
    two = TargetSpec(label="cat_*", kind="multilabel", continuous=["valence", "arousal", "dominance"],
                     vad_mixture={"columns": ["valence", "arousal"]})
    assert two.vad_mixture.build(two.continuous).dims == ("valence", "arousal")
    tilted = TargetSpec(label="cat_*", kind="multilabel", continuous=["valence", "arousal", "dominance"],
                        vad_mixture={"emotions": "basic", "priors": {**{k: 1.0 for k in BASIC}, "sad": 3.0}})
    assert tilted.vad_mixture.build(tilted.continuous).prior[1] == pytest.approx(3 / 8)
    for bad, why in (({"label": "y", "n_classes": 3, "vad_mixture": {}}, "belongs to a multilabel target"),
                     ({"label": "cat_*", "kind": "multilabel", "vad_mixture": {}}, "needs the valence and arousal"),
                     ({"label": "cat_*", "kind": "multilabel", "continuous": ["valence", "arousal"],
                       "vad_mixture": {"columns": ["valence", "pleasure"]}}, "must also be `continuous`"),
                     ({"label": "cat_*", "kind": "multilabel", "continuous": ["valence", "arousal"],
                       "vad_mixture": {"emotions": "plutchik"}}, "unknown emotion set"),
                     ({"label": "cat_*", "kind": "multilabel", "continuous": ["valence", "arousal"],
                       "vad_mixture": {"scale": [5, 1]}}, "high > low"),
                     ({"label": "cat_*", "kind": "multilabel", "continuous": ["valence", "arousal"],
                       "vad_mixture": {"weight": 2}}, "Extra inputs")):
        with pytest.raises(ValidationError, match=why):
            TargetSpec(**bad)
