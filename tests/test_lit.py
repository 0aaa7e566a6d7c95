"""The one LightningModule and the Trainer helper: heads, masked targets, best weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fusion.lit import Head, LitModule, TensorDictDataset, fit_module, head_loss, loaders


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.cls = nn.Linear(8, 3)
        self.tags = nn.Linear(8, 2)
        self.score = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return {"cls": self.cls(h), "tags": self.tags(h), "score": self.score(h)}


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x):
        return self.layer(x)


def data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    cls = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    tags = torch.stack([(x[:, 2] > 0), (x[:, 3] > 0)], dim=1).float()
    score = 2 * x[:, 0] - x[:, 1]
    return x, {"cls": cls, "tags": tags, "score": score}


def test_missing_targets_are_left_out_of_each_loss():
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    full, keep = head_loss(Head("c", "multiclass", 3), out, torch.tensor([0, 1]), None)
    half, keep_half = head_loss(Head("c", "multiclass", 3), out, torch.tensor([0, -1]), None)
    assert keep.all() and keep_half.tolist() == [True, False]
    assert half == pytest.approx(nn.functional.cross_entropy(out[:1], torch.tensor([0])).item())
    reg, k = head_loss(Head("s", "regression", 1), torch.tensor([[1.0], [5.0]]), torch.tensor([2.0, np.nan]), None)
    assert reg.item() == pytest.approx(1.0) and k.tolist() == [True, False]
    none, _ = head_loss(Head("s", "regression", 1), torch.tensor([[1.0]]), torch.tensor([np.nan]), None)
    assert none.item() == 0.0
    ml, k = head_loss(Head("t", "multilabel", 2), torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [np.nan, 1.0]]), None)
    assert ml.item() == pytest.approx(np.log(2)) and k.tolist() == [True, False]


def test_multiclass_multilabel_and_regression_heads_train_jointly():
    x, targets = data()
    targets["cls"][::5] = -1  # some samples lack this label
    ds = TensorDictDataset({"x": x[:180]}, {k: v[:180] for k, v in targets.items()})
    val = TensorDictDataset({"x": x[180:]}, {k: v[180:] for k, v in targets.items()})
    torch.manual_seed(0)
    heads = [Head("cls", "multiclass", 3), Head("tags", "multilabel", 2), Head("score", "regression", 1, weight=0.5)]
    module = LitModule(TwoHeads(), heads, lr=1e-2, schedule="cosine", warmup_epochs=1)
    train_dl, val_dl = loaders(ds, val, 32, seed=0)
    result = fit_module(module, train_dl, val_dl, seed=0, max_epochs=60, patience=10)
    assert result.best_epoch is not None and result.best_epoch < result.epochs + 1
    with torch.no_grad():
        out = module(x=x[180:])
    keep = targets["cls"][180:] >= 0
    assert (out["cls"].argmax(1)[keep] == targets["cls"][180:][keep]).float().mean() > 0.75
    assert ((out["tags"] > 0).float() == targets["tags"][180:]).float().mean() > 0.8
    assert torch.corrcoef(torch.stack([out["score"][:, 0], targets["score"][180:]]))[0, 1] > 0.9


def test_best_weights_are_restored_and_fits_are_deterministic():
    x, targets = data(120, seed=1)
    ds = TensorDictDataset({"x": x[:80]}, {"cls": targets["cls"][:80]})
    val = TensorDictDataset({"x": x[80:]}, {"cls": targets["cls"][80:]})

    def run():
        torch.manual_seed(3)
        module = LitModule(Linear(), [Head("cls", "multiclass", 3)], lr=0.05)
        tr, va = loaders(ds, val, 16, seed=3)
        res = fit_module(module, tr, va, seed=3, max_epochs=40, patience=5)
        return module, res

    m1, r1 = run()
    m2, r2 = run()
    assert r1 == r2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    # the kept weights are those of the best validation epoch, not the last one
    assert r1.best_epoch < r1.epochs
    with torch.no_grad():
        kept = nn.functional.cross_entropy(m1(x=x[80:])["cls"], targets["cls"][80:]).item()
    assert kept == pytest.approx(r1.best_score, rel=1e-5)


def test_without_validation_it_trains_the_given_epochs():
    x, targets = data(64)
    ds = TensorDictDataset({"x": x}, {"cls": targets["cls"]})
    module = LitModule(Linear(), [Head("cls", "multiclass", 3)])
    tr, va = loaders(ds, None, 16, seed=0)
    assert va is None
    res = fit_module(module, tr, None, seed=0, max_epochs=7)
    assert res.best_epoch is None and res.epochs == 7


def test_dataset_rows_must_agree():
    with pytest.raises(ValueError, match="same number of rows"):
        TensorDictDataset({"x": torch.zeros(3, 2)}, {"y": torch.zeros(4)})


@pytest.mark.parametrize("clip", [None, 0.5])
def test_the_plain_loop_gives_the_trainers_weights(clip):
    """On one CPU the default engine is `FitLoop`: the same steps, early stopping and kept
    epoch as Lightning's Trainer, to the bit (several heads, missing targets, dropout, clipping)."""
    x, targets = data(300, seed=2)
    targets["cls"][::7] = -1
    targets["score"][::5] = float("nan")
    ds = TensorDictDataset({"x": x[:220]}, {k: v[:220] for k, v in targets.items()})
    val = TensorDictDataset({"x": x[220:]}, {k: v[220:] for k, v in targets.items()})

    class Dropping(TwoHeads):
        def forward(self, x):
            return super().forward(nn.functional.dropout(x, 0.3, self.training))

    def run(engine, val_set):
        torch.manual_seed(5)
        heads = [Head("cls", "multiclass", 3), Head("tags", "multilabel", 2), Head("score", "regression", 1)]
        module = LitModule(Dropping(), heads, lr=0.05)
        tr, va = loaders(ds, val_set, 32, seed=5)
        res = fit_module(module, tr, va, seed=5, max_epochs=40, patience=4, gradient_clip=clip, engine=engine)
        return module, res

    for val_set in (val, None):
        (m1, r1), (m2, r2) = run("lightning", val_set), run("loop", val_set)
        assert (r1.epochs, r1.best_epoch) == (r2.epochs, r2.best_epoch)
        assert (r1.best_score is None) == (r2.best_score is None)
        if r1.best_score is not None:
            assert r1.best_score == pytest.approx(r2.best_score, rel=1e-6)
            assert r1.epochs < 40  # early stopping happened, at the same epoch
        for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert run("auto", val)[1] == run("loop", val)[1]


def test_the_loop_engine_refuses_what_it_does_not_do():
    x, targets = data(64)
    ds = TensorDictDataset({"x": x}, {"cls": targets["cls"]})
    module = LitModule(Linear(), [Head("cls", "multiclass", 3)], schedule="cosine")
    tr, _ = loaders(ds, None, 16, seed=0)
    with pytest.raises(ValueError, match="engine 'loop' runs one CPU process"):
        fit_module(module, tr, None, seed=0, max_epochs=2, engine="loop")
    assert fit_module(module, tr, None, seed=0, max_epochs=2).epochs == 2  # auto: the Trainer does it
