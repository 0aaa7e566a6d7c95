"""Token ids into the store, and fine-tuning a (tiny, local) Hugging Face encoder on them."""

from __future__ import annotations

import numpy as np
import pytest

from features.base import Sample
from features.registry import build_extractor
from fusion.evaluation.splits import grouped_kfold
from fusion.models.base import MODELS
from fusion.models.targets import Targets
from fusion.persist import load_model, save_model


def test_tokens_of_utterances_are_ids_with_nan_past_the_end_and_long_texts_are_warned():
    ext = build_extractor("tokens", {"max_length": 8})
    samples = [Sample("u1", "s", text="I am so happy today"), Sample("u2", "s", text="word " * 20),
               Sample("u3", "s", text="   ")]
    batch = ext.process_samples([(s, None) for s in samples])
    assert "empty utterance" in str(batch.errors["u3"])
    frame = batch.frame
    assert list(frame.columns) == [f"tok_{i:03d}" for i in range(8)]
    short = frame.loc["u1"].to_numpy()[0]
    n = int((~np.isnan(short)).sum())
    assert 4 <= n < 8 and np.isnan(short[n:]).all()
    assert short[0] == ext.tokenizer.cls_token_id and short[n - 1] == ext.tokenizer.sep_token_id
    assert not np.isnan(frame.loc["u2"].to_numpy()).any()
    assert any("truncated" in w for w in batch.warnings["u2"])


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    return folder


def token_data(n=120, length=12, seed=0):
    """Sentences of random tokens; class c plants token 10 + c somewhere in each of its texts."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = np.full((n, length), np.nan)
    for i in range(n):
        k = rng.integers(5, length + 1)
        X[i, :k] = rng.integers(20, 64, k)
        X[i, rng.integers(1, k - 1)] = 10 + y[i]
        X[i, 0], X[i, k - 1] = 2, 3
    return {"text": X}, y, np.arange(n).astype(str)


def test_a_local_encoder_is_fine_tuned_calibrated_saved_and_reloaded(tiny_encoder, tmp_path):
    blocks, y, groups = token_data()
    inner = grouped_kfold(y, groups, 3, 0)
    model = MODELS.get("text-finetune")(model=str(tiny_encoder), lr=3e-3, max_epochs=25, patience=5,
                                        batch_size=16, device="cpu", warmup_epochs=0)
    model.fit(blocks, Targets.classes(y, 3), inner=inner, seed=0)
    test, yt, _ = token_data(seed=1)
    proba = model.predict_proba(test)
    assert proba.shape == (120, 3) and np.allclose(proba.sum(1), 1)
    assert (proba.argmax(1) == yt).mean() > 0.8  # the planted token is found
    assert model.embedding(test).shape == (120, 16)
    assert model.summary()["trained_on"].startswith("cpu")
    missing = {"text": np.full((2, 12), np.nan)}
    assert np.allclose(model.predict_proba(missing), 1 / 3)  # no text: no information
    save_model(model, tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.bin"))
    again = load_model(tmp_path / "m")  # needs only its own folder
    np.testing.assert_allclose(again.predict_proba(test), proba, atol=1e-5)


def test_fine_tuning_refuses_real_valued_features_and_several_modalities(tiny_encoder):
    model = MODELS.get("text-finetune")(model=str(tiny_encoder), device="cpu")
    inner = [(np.arange(10), np.arange(10, 20))]
    with pytest.raises(ValueError, match="needs token ids"):
        model.fit({"text": np.random.default_rng(0).normal(size=(20, 4))}, Targets.classes(np.arange(20) % 2, 2),
                  inner=inner)
    with pytest.raises(ValueError, match="one modality"):
        model.fit({"a": np.ones((20, 4)), "b": np.ones((20, 4))}, Targets.classes(np.arange(20) % 2, 2), inner=inner)
