"""ATEI fusion for depression: the acoustic–textual emotional inconsistency of a session's turns
(`fusion.models.nets.atei`), trained through the shared Lightning module with joint heads,
early-stopped and temperature-calibrated on inner folds like every neural model here.

Inputs: two per-turn sequence modalities, the acoustic and the textual stream (any feature
sets: eGeMAPS functionals, the speech-emotion recogniser's posteriors and embedding, sentence
embeddings, the text-emotion recogniser's output), aligned on the same turns; further
modalities join as their own branches. With `posteriors` (a pattern of column names such as
"*/p_*"), each stream's emotion posteriors are mapped to shared emotion names (`emotion_map`:
RAVDESS "calm" and "neutral", MELD "joy" and "happy", … fall together) and the Jensen–Shannon
divergence between the two streams' posteriors of each turn enters the ATEI representation.

Heads: the target (e.g. PHQ-8 severity, 5 classes) and, when the evaluator gives them
(`auxiliary`), binary depression (the target's positive classes) and the PHQ-8 score, trained
jointly with loss weights `binary_weight` and `score_weight`. The score head is what
`predict_score` returns, so the score is not fitted by a separate model.

Comparisons (`compare`, fitted on the same folds when the evaluation runs the ablation): the
same network with ATEI off, without the scale, with each other fusion strategy, and the
calibrated late fusion of the same turn features pooled per session (mean and sd). Each stream
alone is scored by the ablation of modality subsets (the other stream masked).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from fusion.data.sequences import SequenceBlock
from fusion.models.base import MODELS, Blocks
from fusion.models.neural import AttentionParams, NeuralFusionModel, balanced_weights

# Emotion names of the common corpora mapped to one vocabulary (RAVDESS, MELD, IEMOCAP, CREMA-D…)
EMOTION_MAP = {
    "neutral": "neutral", "calm": "neutral", "neu": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy", "excited": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "fear": "fearful", "fearful": "fearful",
    "disgust": "disgust", "disgusted": "disgust",
    "surprise": "surprised", "surprised": "surprised",
}
Compare = Literal["atei-off", "no-scale", "concat", "add", "gated", "late-fusion"]


class ATEIParams(AttentionParams):
    acoustic: str | None = None
    textual: str | None = None
    positions: Literal["time", "order"] = "time"
    fusion: Literal["concat", "add", "gated", "none"] = "concat"
    scale: Literal["none", "fixed", "scalar", "vector"] = "scalar"
    scale_init: float = 1.0
    aligned: bool = True
    atei_layers: int = Field(1, ge=0)
    posteriors: str | None = None
    emotion_map: dict[str, str] = Field(default_factory=dict)
    binary_weight: float = Field(0.5, ge=0)
    score_weight: float = Field(0.5, ge=0)
    compare: list[Compare] = Field(default_factory=lambda: ["atei-off", "no-scale", "add", "gated", "late-fusion"])

    @model_validator(mode="after")
    def _check(self) -> ATEIParams:
        if self.acoustic is not None and self.acoustic == self.textual:
            raise ValueError(f"acoustic and textual must be different modalities, both are {self.acoustic!r}")
        if self.fusion == "none" and self.posteriors:
            raise ValueError("posteriors feed the ATEI branch, which fusion: none switches off")
        return self


def emotion_of(column: str) -> str:
    """The emotion a posterior column names: `speech_emotion/p_happy` → "happy"."""
    name = column.rsplit("/", 1)[-1]
    return name[2:] if name.startswith("p_") else name


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (bits, 0..1) between distributions on the last axis."""
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    m = (p + q) / 2

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log2(a / b), 0.0).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@MODELS.register("atei")
class ATEIFusion(NeuralFusionModel):
    """Acoustic–textual emotional inconsistency fusion (see the module docstring).

    Args:
        acoustic, textual: the two stream modalities (default: the first two sequence
            modalities, in the order of the config).
        hidden, layers, heads, dropout: the stream encoders and attention.
        positions: the turns' positions: "time" (start time / `time_scale` seconds) or
            "order" (the turn's index in the session).
        fusion: "concat", "add", "gated", or "none" (ATEI off).
        scale: the ATEI branch's weight: "none", "fixed" (`scale_init`), "scalar" or "vector"
            (learned, starting at `scale_init`).
        aligned: add the same turn's stream difference and product to the inconsistency.
        atei_layers: Transformer layers over the turns' inconsistencies.
        posteriors: pattern of the emotion-posterior columns of both streams (e.g. "*/p_*"):
            adds the per-turn Jensen–Shannon divergence; `emotion_map` adds name mappings.
        binary_weight, score_weight: loss weights of the binary and score heads.
        compare: the variants fitted beside it in the ablation.
        modality_dropout, calibration, refit, max_inner and the training settings: see
            `fusion.models.neural`.
    """

    Params = ATEIParams
    tag = "atei"
    inputs = frozenset({"sequence"})
    auxiliary = frozenset({"score", "binary"})

    # --- set up from the training data ----------------------------------------------------------
    def _prepare(self, blocks: Blocks, y: np.ndarray) -> None:
        p = self.params
        seq = self.sequence_
        if p.acoustic is None and p.textual is None:
            if len(seq) < 2:
                raise ValueError(f"ATEI needs two sequence modalities (acoustic and textual, `pool: sequence`); "
                                 f"got {len(seq)} among {self.modalities}")
            self.streams_ = (seq[0], seq[1])
        else:
            named = p.acoustic or p.textual
            other = next((m for m in seq if m != named), None)
            if other is None:
                raise ValueError(f"ATEI needs a second sequence modality beside {named!r}; the sequence "
                                 f"modalities are {seq}")
            self.streams_ = (p.acoustic or other, p.textual or other)
        for role, m in zip(("acoustic", "textual"), self.streams_, strict=True):
            if m not in self.modalities:
                raise ValueError(f"ATEI {role} stream {m!r} is not a modality of the config ({self.modalities})")
            if m not in seq:
                raise ValueError(f"ATEI {role} stream {m!r} must be a per-turn sequence (`pool: sequence`)")
        self.posterior_ = self._posterior_columns(blocks) if p.posteriors else None
        self.heads_out_ = {"y": self.n_out_}
        if self.task == "classification":
            if "binary" in self._aux and self.n_out_ > 2 and p.binary_weight > 0:
                self.heads_out_["binary"] = 2
            if "score" in self._aux and p.score_weight > 0 and np.isfinite(self._aux["score"]).sum() > 1:
                self.heads_out_["score"] = 1
                s = self._aux["score"]
                self.score_mean_, self.score_sd_ = float(np.nanmean(s)), float(np.nanstd(s) or 1.0)

    def _posterior_columns(self, blocks: Blocks) -> dict[str, Any]:
        """Per stream, the column indices of each shared emotion; the shared emotions."""
        mapping = {**EMOTION_MAP, **{k.lower(): v.lower() for k, v in self.params.emotion_map.items()}}
        found: dict[str, dict[str, list[int]]] = {}
        for m in self.streams_:
            cols = blocks[m].columns
            hits = [i for i, c in enumerate(cols) if fnmatch.fnmatchcase(c, self.params.posteriors)]
            if not hits:
                raise ValueError(f"ATEI posteriors {self.params.posteriors!r} match no column of stream {m!r} "
                                 f"(its columns start {list(cols[:4])})")
            by_name: dict[str, list[int]] = {}
            for i in hits:
                name = emotion_of(cols[i]).lower()
                by_name.setdefault(mapping.get(name, name), []).append(i)
            found[m] = by_name
        a, t = self.streams_
        shared = sorted(set(found[a]) & set(found[t]))
        if len(shared) < 2:
            raise ValueError(f"ATEI posteriors: the streams share {shared} of their emotions ({sorted(found[a])} "
                             f"vs {sorted(found[t])}); map names onto each other with `emotion_map`")
        return {"shared": shared, "columns": {m: [found[m][e] for e in shared] for m in self.streams_}}

    def _divergence(self, blocks: Blocks) -> np.ndarray:
        """(n, T) per-turn JS divergence of the streams' posteriors over the shared emotions
        (0 where a stream lacks the turn: the ATEI branch masks those turns)."""
        dists = []
        for m in self.streams_:
            v = blocks[m].values
            d = np.stack([v[..., idx].sum(-1) for idx in self.posterior_["columns"][m]], axis=-1)
            dists.append(np.clip(d, 1e-8, None))
        div = js_divergence(*dists)
        return np.nan_to_num(div).astype(np.float32)

    # --- the network and its heads ---------------------------------------------------------------
    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.atei import ATEI

        p = self.params
        return ATEI(dims=dims, sequence=sequence, acoustic=self.streams_[0], textual=self.streams_[1],
                    heads_out=self.heads_out_, hidden=p.hidden, layers=p.layers, heads=p.heads,
                    dropout=p.dropout, time_scale=p.time_scale, fusion=p.fusion, scale=p.scale,
                    scale_init=p.scale_init, aligned=p.aligned, divergence=self.posterior_ is not None,
                    atei_layers=p.atei_layers, modality_dropout=p.modality_dropout)

    def lit_heads(self, n_out: int) -> list:
        from fusion.lit import Head

        out = super().lit_heads(n_out)
        if "binary" in self.heads_out_:
            b = self._aux["binary"]
            out.append(Head("binary", "multiclass", 2, weight=self.params.binary_weight,
                            class_weights=balanced_weights(b[np.isfinite(b)], 2)))
        if "score" in self.heads_out_:
            out.append(Head("score", "regression", 1, weight=self.params.score_weight, loss="smooth_l1"))
        return out

    def head_targets(self, y: np.ndarray, masks: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {"y": y}
        if "binary" in self.heads_out_:
            b = self._aux["binary"][rows].astype(float)
            out["binary"] = np.where(np.isfinite(b), b, -1).astype(np.int64)
        if "score" in self.heads_out_:
            out["score"] = ((self._aux["score"][rows] - self.score_mean_) / self.score_sd_).astype(np.float32)
        return out

    def _tensors(self, scalers, blocks: Blocks) -> dict[str, dict]:
        import torch

        out = super()._tensors(scalers, blocks)
        for m in self.streams_:
            if not isinstance(blocks[m], SequenceBlock):
                raise ValueError(f"ATEI stream {m!r} must be a per-turn sequence (`pool: sequence`)")
        if self.posterior_ is not None:
            out["div"] = {"turn": torch.as_tensor(self._divergence(blocks))}
        if self.params.positions == "order":  # turn index × time_scale, so positions run 0, 1, 2, …
            for m, t in out["times"].items():
                out["times"][m] = torch.arange(t.shape[1], dtype=t.dtype).expand_as(t) * self.params.time_scale
        return out

    # --- prediction and attributions -------------------------------------------------------------
    def predict_score(self, blocks: Blocks, modalities: Sequence[str] | None = None) -> np.ndarray:
        if self.task == "regression":
            return super().predict_score(blocks, modalities)
        self.check_fitted()
        if "score" not in self.heads_out_:
            raise NotImplementedError("this ATEI model was trained without a score head (no auxiliary score)")
        keep = self._selected(modalities)
        out = self._forward(self.net_, self.scalers_, {m: blocks[m] for m in self.modalities}, keep, key="score")
        return out[:, 0] * self.score_sd_ + self.score_mean_

    def scores_jointly(self) -> bool:
        return self.task == "classification" and "score" in self.heads_out_

    def turn_contributions(self, blocks: Blocks, n_steps: int = 32, batch: int = 64) -> dict[str, np.ndarray]:
        """Integrated Gradients (Captum) of the predicted class's logit (of the score, for a
        regression model) from the training mean of every input: per modality, (n, T) each
        turn's share (summed over its features; 0 for absent turns) or (n,) for a pooled one.
        A sample's shares sum to its logit minus the logit at the training mean."""
        import torch
        from captum.attr import IntegratedGradients

        self.check_fitted()
        mods = list(self.modalities)
        seq = [m for m in mods if isinstance(blocks[m], SequenceBlock)]
        inputs = self._tensors(self.scalers_, {m: blocks[m] for m in mods})
        has_div = "div" in inputs
        net = self.net_.eval()

        def forward(*args):
            k = len(mods)
            x = dict(zip(mods, args[:k], strict=True))
            mask = {m: a.bool() for m, a in zip(mods, args[k:2 * k], strict=True)}
            times = dict(zip(seq, args[2 * k:2 * k + len(seq)], strict=True))
            div = {"turn": args[-1]} if has_div else None
            return net(x, mask, times, div)["y"]

        target = None
        if self.task == "classification":
            target = torch.as_tensor(self.predict_proba(blocks).argmax(1))
        ig = IntegratedGradients(forward)
        n = len(next(iter(inputs["x"].values())))
        parts: dict[str, list[np.ndarray]] = {m: [] for m in mods}
        for a in range(0, n, batch):
            sl = slice(a, a + batch)
            xs = tuple(inputs["x"][m][sl].requires_grad_() for m in mods)
            extra = (*(inputs["mask"][m][sl] for m in mods), *(inputs["times"][m][sl] for m in seq),
                     *((inputs["div"]["turn"][sl],) if has_div else ()))
            attr = ig.attribute(xs, additional_forward_args=extra, n_steps=n_steps,
                                target=None if target is None else target[sl])
            for m, at in zip(mods, attr, strict=True):
                at = at.detach().float()
                parts[m].append((at.sum(-1) * inputs["mask"][m][sl]).numpy() if m in seq else at.sum(-1).numpy())
        return {m: np.concatenate(v) for m, v in parts.items()}

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        """(n, modalities) each modality's Integrated-Gradients share of the predicted class's
        logit (summed over its turns and features)."""
        if self.task != "classification":
            return None
        turns = self.turn_contributions(blocks)
        return np.column_stack([t.sum(1) if t.ndim == 2 else t for t in (turns[m] for m in self.modalities)])

    def baselines(self) -> dict[str, tuple[str, dict[str, Any]]]:
        p = self.params.model_dump(mode="json")
        base = {**p, "compare": []}
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for name in self.params.compare:
            if name == "atei-off":
                out["atei-off"] = ("atei", {**base, "fusion": "none", "posteriors": None})
            elif name == "no-scale" and p["scale"] != "none":
                out["atei-no-scale"] = ("atei", {**base, "scale": "none"})
            elif name in ("concat", "add", "gated") and p["fusion"] != name:
                out[f"atei-{name}"] = ("atei", {**base, "fusion": name})
            elif name == "late-fusion":
                out["late-fusion"] = ("pooled", {"model": {"name": "late-fusion"}, "stats": ["mean", "sd"]})
        return out

    def summary(self) -> dict[str, Any]:
        d = super().summary()
        d["streams"] = list(self.streams_)
        scale = getattr(getattr(self.net_, "scale", None), "weight", None)
        if scale is not None:
            w = scale.detach().float()
            d["atei_scale"] = float(w.mean()) if w.dim() else float(w)
        if self.posterior_ is not None:
            d["shared_emotions"] = self.posterior_["shared"]
        return d

    # --- persistence -----------------------------------------------------------------------------
    def save_state(self, folder: Path) -> dict[str, Any]:
        state = super().save_state(folder)
        state.update(streams=list(self.streams_), heads_out=self.heads_out_, posterior=self.posterior_)
        if "score" in self.heads_out_ and self.task == "classification":
            state.update(score_mean=self.score_mean_, score_sd=self.score_sd_)
        return state

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        self.streams_ = tuple(state["streams"])
        self.heads_out_ = dict(state["heads_out"])
        self.posterior_ = state["posterior"]
        if "score_mean" in state:
            self.score_mean_, self.score_sd_ = state["score_mean"], state["score_sd"]
        super().load_state(state, folder)
