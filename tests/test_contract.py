"""One contract, checked on every registered fusion model — single-label and multi-label, from
the one registry, by the heads each declares — and on every network of `fusion.models.nets`
(timm style: a new model is covered by registering it, a new network by subclassing `Net`)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from fusion.data.sequences import SequenceBlock, missing_like
from fusion.evaluation.splits import grouped_kfold
from fusion.models.base import MODELS, FusionModel
from fusion.models.nets.base import Net
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model

N, K = 96, 3


def fast(name: str) -> dict:
    """Short training for neural models (any model whose parameters include max_epochs)."""
    fields = MODELS.get(name).Params.model_fields
    return {"max_epochs": 25, "patience": 5} if "max_epochs" in fields else {}


def as_sequence(pooled: np.ndarray, rng: np.random.Generator, lengths: np.ndarray, t: int = 5) -> SequenceBlock:
    """Per-segment noisy copies of each sample's row, padded past its length."""
    values = pooled[:, None, :] + rng.normal(0, 1.5, (N, t, pooled.shape[1]))
    pad = np.arange(t)[None, :] >= lengths[:, None]
    values[pad] = np.nan
    starts = np.where(pad, np.nan, np.arange(t)[None, :] * 4.0)
    return SequenceBlock(values, starts, starts + 3.0, lengths, tuple(f"f{i}" for i in range(pooled.shape[1])))


def dataset(sequence: bool, seed: int = 0, pairs: bool = False):
    """Three modalities seeing a class through noise; `c` carries nothing. With `sequence`, `a`
    is a (n, T, d) sequence whose later segments are padding for some samples; with `pairs`
    `b` is one too, on the same segments (for models of two aligned streams)."""
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    centres = rng.normal(0, 1.5, (K, 6))
    a = centres[y] + rng.normal(0, 1.0, (N, 6))
    blocks = {"a": a, "b": centres[y][:, :4] + rng.normal(0, 1.2, (N, 4)), "c": rng.normal(0, 1, (N, 3))}
    if sequence:
        lengths = rng.integers(2, 6, N)
        blocks["a"] = as_sequence(centres[y], rng, lengths)
        if pairs:
            blocks["b"] = as_sequence(centres[y][:, :4], rng, lengths)
    groups = np.arange(N).astype(str)
    return blocks, y, groups


def cases():
    for name in MODELS.names():
        if "classes" not in MODELS.get(name).heads:  # multi-label models: test_multilabel_model_contract
            continue
        kinds = MODELS.get(name).inputs
        if kinds == {"sequence"}:  # two aligned streams (atei)
            yield pytest.param(name, "pairs", id=f"{name}-sequence-pairs")
            continue
        if "pooled" not in kinds:  # token ids (text-finetune): its own test, tests/test_text_finetune.py
            continue
        yield pytest.param(name, False, id=f"{name}-pooled")
        if "sequence" in kinds:
            yield pytest.param(name, True, id=f"{name}-sequence")
            # two sequence modalities: one dropped must leave no trace (e.g. through attention
            # between the modalities' segments)
            yield pytest.param(name, "pairs", id=f"{name}-sequence-pairs")


def fit(name: str, blocks, y, groups, task="classification", seed=0) -> FusionModel:
    inner = grouped_kfold(np.arange(N) % K, groups, 3, 0)
    targets = Targets.classes(y, K) if task == "classification" else Targets.scores(y)
    return MODELS.get(name)(**fast(name)).fit(blocks, targets, inner=inner, seed=seed)


def test_every_registered_model_is_under_a_contract_test():
    """One registry, every model in a contract test: single-label ones here (text-finetune, which
    reads token ids, in tests/test_text_finetune.py), multi-label ones below."""
    single = {p.values[0] for p in cases()}
    multi = {n for n in MODELS.names() if "multilabel" in MODELS.get(n).heads}
    assert set(MODELS.names()) - single - multi == {"text-finetune"}
    assert {"context-fusion", "context-finetune"} <= multi and "late-fusion" in single


@pytest.mark.parametrize("name,sequence", list(cases()))
def test_fusion_model_contract(name, sequence, tmp_path):
    blocks, y, groups = dataset(bool(sequence), pairs=sequence == "pairs")
    model = fit(name, blocks, y, groups)
    p = model.predict_proba(blocks)
    assert p.shape == (N, K) and np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y).mean() > 0.6, "the model learned nothing on an easy problem"
    assert np.array_equal(model.predict(blocks), p.argmax(1))

    # a modality missing for some samples, and dropped for all
    partial = dict(blocks)
    holes = np.arange(N) % 4 == 0
    partial["b"] = with_holes(blocks["b"], holes)
    assert np.isfinite(model.predict_proba(partial)).all()
    sub = model.predict_proba(blocks, ["a", "c"])
    assert sub.shape == (N, K) and np.allclose(sub.sum(1), 1)
    # a dropped modality's values play no part
    np.testing.assert_allclose(sub, model.predict_proba({**blocks, "b": missing_like(blocks["b"])}, ["a", "c"]),
                               atol=1e-6)
    with pytest.raises(ValueError, match="unknown modality"):
        model.predict_proba(blocks, ["a", "nonsense"])

    # save → load gives identical predictions, whole and on a subset; no pickle anywhere
    save_model(model, tmp_path / "m", {m: [f"f{i}" for i in range(np.shape(blocks[m])[-1])] for m in blocks})
    loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(blocks), p, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(blocks, ["a", "c"]), sub, atol=1e-6)
    assert not [f for f in (tmp_path / "m").iterdir() if f.suffix in (".pkl", ".pickle", ".joblib")]

    # the same seed gives the same model
    np.testing.assert_allclose(fit(name, blocks, y, groups).predict_proba(blocks), p, atol=1e-6)

    assert set(model.summary()["modalities"]) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="has no parameter"):
        MODELS.get(name)(nonsense=1)
    # multi-label targets are refused, naming the heads the model trains
    with pytest.raises(ValueError, match="heads, not multilabel"):
        MODELS.get(name)(**fast(name)).fit(blocks, Targets.multilabel(np.eye(K)[y]), inner=[])


@pytest.mark.parametrize("name,sequence", list(cases()))
def test_fusion_model_regression_head(name, sequence):
    blocks, y, groups = dataset(bool(sequence), seed=1, pairs=sequence == "pairs")
    score = y * 4.0 + np.random.default_rng(0).normal(0, 1, N)
    model = fit(name, blocks, score, groups, task="regression")
    pred = model.predict(blocks)
    assert pred.shape == (N,) and np.isfinite(pred).all()
    assert np.corrcoef(pred, score)[0, 1] > 0.5
    assert model.predict(blocks, ["a"]).shape == (N,)


def test_a_model_that_cannot_drop_modalities_is_refitted_in_the_ablation():
    from fusion.evaluation.crossval import ModelSpec, cross_validate
    from fusion.evaluation.splits import SplitConfig, make_folds

    blocks, y, groups = dataset(False)
    folds = make_folds(SplitConfig(n_splits=3, n_repeats=1, inner_splits=2), y, groups)
    res = cross_validate(blocks, y, folds, model=ModelSpec("early-fusion"), n_classes=K, ablation=True)
    assert set(res.ablation) == {"early:a", "early:b", "early:c", "early:a+b", "early:a+c", "early:b+c",
                                 "early:a+b+c"}
    # the one-modality variants are refits on that modality alone, not imputed predictions
    from fusion.models.early_fusion import EarlyFusion

    fold = folds[0]
    alone = EarlyFusion().fit({"a": blocks["a"][fold.train]}, Targets.classes(y[fold.train], K),
                              inner=[(np.flatnonzero(np.isin(fold.train, a)), np.flatnonzero(np.isin(fold.train, b)))
                                     for a, b in fold.inner], seed=fold.seed)
    np.testing.assert_allclose(res.variants["early:a"][0, fold.test], alone.predict_proba({"a": blocks["a"][fold.test]}))
    np.testing.assert_allclose(res.variants["early:a+b+c"][0], res.variants["model"][0])


def test_configured_baselines_are_fitted_on_the_same_folds_and_paired_with_the_model():
    from fusion.evaluation.crossval import ModelSpec, cross_validate, summarise
    from fusion.evaluation.splits import SplitConfig, make_folds

    blocks, y, groups = dataset(False)
    folds = make_folds(SplitConfig(n_splits=3, n_repeats=1, inner_splits=2), y, groups)
    res = cross_validate(blocks, y, folds, model=ModelSpec("late-fusion"), n_classes=K, ablation=True,
                         baselines={"other": ModelSpec("early-fusion", {"calibration": "none"})})
    assert res.ablation["other:a+b+c"] == ("other", "a+b+c") and res.ablation["early:a+b+c"] == ("early", "a+b+c")
    assert res.ablation["late:a"] == ("late", "a")
    summarise(res, y, groups, None, n_bootstrap=50, seed=0)
    gain = res.metrics["other:a+b+c"]["f1_weighted_gain_of_model"]
    model, other = res.metrics["model"]["f1_weighted"]["mean"], res.metrics["other:a+b+c"]["f1_weighted"]["mean"]
    assert gain["mean"] == pytest.approx(model - other) and gain["ci_low"] <= gain["mean"] <= gain["ci_high"]


def networks() -> dict[str, type[Net]]:
    """Every network of `fusion.models.nets` (each module imported)."""
    import importlib
    import pkgutil

    import fusion.models.nets as package

    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(info.name)

    def below(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return {f"{c.__module__.rsplit('.', 1)[1]}.{c.__name__}": c for c in below(Net)}


def test_every_network_module_holds_a_network():
    import pkgutil

    import fusion.models.nets as package

    modules = {i.name for i in pkgutil.iter_modules(package.__path__)} - {"base", "layers"}
    assert modules == {k.split(".")[0] for k in networks()}


@pytest.mark.parametrize("name", sorted(networks()))
def test_network_contract(name):
    torch.manual_seed(0)
    net, inputs, shapes = networks()[name].example(batch=4)
    out = net(**inputs)
    out = out if isinstance(out, dict) else {"y": out}
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert all(torch.isfinite(v).all() for v in out.values())
    sum(v.sum() for v in out.values()).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    net.eval()
    with torch.no_grad():
        first = net(**inputs)
        again = net(**inputs)
        first = first if isinstance(first, dict) else {"y": first}
        again = again if isinstance(again, dict) else {"y": again}
        for k in first:
            torch.testing.assert_close(first[k], again[k])
        if "mask" in inputs:  # values under the mask must not matter
            changed = {**inputs, "x": {m: torch.where(_expand(inputs["mask"][m], x), x, torch.full_like(x, 1e3))
                                       for m, x in inputs["x"].items()}}
            out2 = net(**changed)
            out2 = out2 if isinstance(out2, dict) else {"y": out2}
            for k in first:
                if "@" not in k:  # a per-modality head sees its own input whether masked or not
                    torch.testing.assert_close(first[k], out2[k])


def with_holes(block, holes: np.ndarray):
    """The block with the modality missing for the `holes` samples."""
    if isinstance(block, SequenceBlock):
        values = block.values.copy()
        values[holes] = np.nan
        return block.with_values(values)
    out = block.copy()
    out[holes] = np.nan
    return out


def _expand(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))


def multilabel_inputs(name: str, tmp_path):
    """Inputs of a registered multi-label model: embedding blocks (one stream missing for the
    first two rows, the second stream for none), or the images of a small synthetic EMOTIC
    corpus; with (n, k) labels, (n, 3) VAD on 1–10 and fast parameters."""
    rng = np.random.default_rng(0)
    if "images" in MODELS.get(name).inputs:
        from fusion.datasets.emotic import Emotic
        from fusion.models.context_finetune import ImageRows
        from fusion.synthetic.emotic_corpus import generate_emotic_corpus

        ds = Emotic(generate_emotic_corpus(tmp_path / "emotic", n_images=16, seed=0))
        lab, by_id = ds.labels(), {s.sample_id: s for s in ds.samples()}
        inputs = ImageRows([by_id[i] for i in lab.index], {"body": {"crop": "body"}, "context": {"crop": "context"}})
        Y = lab[[c for c in lab.columns if c.startswith("cat_")]].to_numpy(float)
        V = lab[["valence", "arousal", "dominance"]].to_numpy(float)
        params = {"backbone": "test_resnet", "image_size": 32, "batch_size": 8}
        return inputs, Y, V, params
    n = 60
    V = rng.uniform(1, 10, (n, 3))
    blocks = {"body": rng.normal(size=(n, 5)), "context": np.column_stack([V, rng.normal(size=(n, 3))])}
    blocks["body"][:2] = np.nan
    Y = (rng.random((n, 4)) < 0.3).astype(float)
    Y[::4, 0] = 1  # every label has positives
    return blocks, Y, V, {}


def without_any_stream(inputs, rows):
    """The rows with every stream missing: NaN embeddings, or an unreadable image."""
    if isinstance(inputs, dict):
        return {s: np.full_like(b[rows], np.nan) for s, b in inputs.items()}
    sub = inputs.take(rows)
    for s in sub.samples:
        s.media["image"].write_bytes(b"not an image")
    return sub


@pytest.mark.parametrize("name", [n for n in MODELS.names() if "multilabel" in MODELS.get(n).heads])
def test_multilabel_model_contract(name, tmp_path):
    """Every registered multi-label model: fit with categories, VAD and VAD-mixture targets;
    predictions of the right shapes and ranges; thresholds; save / load gives the same
    predictions; a person with no stream gets NaN, never a made-up estimate; unknown
    parameters are refused by name."""
    from fusion.datasets.vad_mixture import VadMixture

    cls = MODELS.get(name)
    inputs, Y, V, params = multilabel_inputs(name, tmp_path)
    n = len(Y)
    mix = VadMixture.build("basic", scale=(1, 10))
    M = mix(V)
    tr, va = np.arange(n - n // 4), np.arange(n - n // 4, n)

    def take(rows):
        return inputs.take(rows) if not isinstance(inputs, dict) else {s: b[rows] for s, b in inputs.items()}

    targets = Targets.multilabel(Y, V, M, mix.to_dict())
    model = cls(hidden=8, max_epochs=3, patience=3, **params).fit(take(tr), targets.rows(tr),
                                                                 val=(take(va), targets.rows(va)), seed=0)
    out = model.predict_heads(take(va))
    P, Vh, Mh = out["multilabel"], out["continuous"], out["distribution"]
    assert P.shape == Y[va].shape and Vh.shape == (len(va), 3) and Mh.shape == (len(va), len(mix.names))
    assert np.isfinite(P).all() and ((P >= 0) & (P <= 1)).all() and np.allclose(Mh.sum(1), 1)
    np.testing.assert_allclose(model.predict_proba(take(va)), P)
    assert set(np.unique(model.predict(take(va)))) <= {0, 1} and len(model.thresholds_) == Y.shape[1]
    loaded = load_model(save_model(model, tmp_path / "m"))
    again = loaded.predict_heads(take(va))
    for k in out:
        np.testing.assert_allclose(again[k], out[k], atol=1e-6)
    assert loaded.mixture_["names"] == mix.names and loaded.task == "multilabel"
    assert not [f for f in (tmp_path / "m").iterdir() if f.suffix in (".pkl", ".pickle", ".joblib")]
    with pytest.warns(UserWarning) if not isinstance(inputs, dict) else contextlib.nullcontext():
        none = loaded.predict_heads(without_any_stream(inputs, [0]))
    assert all(np.isnan(v).all() for v in none.values())
    # a single-label target is refused, naming the heads the model trains
    with pytest.raises(ValueError, match="trains multilabel heads, not classes"):
        cls(hidden=8, max_epochs=1, **params).fit(take(tr), Targets.classes(np.zeros(len(tr), int), 2))
    with pytest.raises(ValueError, match="nonsense"):
        cls(nonsense=1)
