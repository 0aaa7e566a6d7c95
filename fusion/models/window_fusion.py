"""Window fusion for expressions in video (C-EXPR-DB compound emotions, MELD utterances): face,
voice and text features per aligned window (`fusion.models.nets.window_fusion`), late, early or
cross-attention fusion, a prediction for each sample and for each of its windows; trained with
class-balanced losses through the shared Lightning module, early-stopped and
temperature-calibrated on inner folds.

The window head is trained beside the sample head (`window_weight`): every window of a sample
that some modality has carries the sample's label. `window_proba` gives each window's
probabilities, e.g. for per-frame scoring.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from fusion.data.sequences import SequenceBlock
from fusion.models.base import MODELS, Blocks
from fusion.models.neural import AttentionParams, NeuralFusionModel


class WindowFusionParams(AttentionParams):
    fusion: Literal["late", "early", "cross"] = "cross"
    time_scale: float = Field(1.0, gt=0)
    window_weight: float = Field(0.5, ge=0)


@MODELS.register("window-fusion")
class WindowFusionModel(NeuralFusionModel):
    """Per-modality encoders over aligned windows, fused late, early or by cross-attention.

    Args:
        fusion: "late" (mean of per-modality logits), "early" (windows' modalities joined,
            one encoder) or "cross" (each modality's windows attend to the others').
        window_weight: loss weight of the per-window head (0: no window head).
        hidden, layers, heads, dropout, time_scale: the encoders (positions are window start
            / time_scale seconds).
        modality_dropout, calibration, refit, max_inner and the training settings: see
            `fusion.models.neural`.
    """

    Params = WindowFusionParams
    tag = "window"
    inputs = frozenset({"pooled", "sequence"})
    def _prepare(self, blocks: Blocks, y: np.ndarray) -> None:
        seq = [blocks[m] for m in self.sequence_]
        self.window_head_ = bool(seq) and self.params.window_weight > 0
        # the windows some modality has, per training row (their targets are the row's label)
        self._windows = np.logical_or.reduce([b.mask for b in seq]) if seq else None

    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.window_fusion import WindowFusion

        p = self.params
        return WindowFusion(dims=dims, sequence=sequence, n_out=n_out, fusion=p.fusion,
                            window_head=self.window_head_, hidden=p.hidden, layers=p.layers, heads=p.heads,
                            dropout=p.dropout, time_scale=p.time_scale, modality_dropout=p.modality_dropout)

    def lit_heads(self, n_out: int) -> list:
        from dataclasses import replace

        out = super().lit_heads(n_out)
        if self.window_head_:
            out.append(replace(out[0], name="window", weight=self.params.window_weight))
        return out

    def head_targets(self, y: np.ndarray, masks: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {"y": y}
        if self.window_head_:
            windows = self._windows[rows]
            missing = -1 if self.task == "classification" else np.nan
            out["window"] = np.where(windows, y[:, None], missing).astype(y.dtype)
        return out

    def window_proba(self, blocks: Blocks) -> np.ndarray:
        """(n, T, k) each window's probabilities (the sample's temperature applied), NaN for the
        windows no modality has; None for a model without a window head or a regression model."""
        self.check_fitted()
        if not self.window_head_ or self.task != "classification":
            return None  # no window head (no sequence input, or window_weight 0), or a regression model
        logits = self._forward(self.net_, self.scalers_, {m: blocks[m] for m in self.modalities}, self.modalities,
                               key="window")
        from scipy.special import softmax

        proba = softmax(logits / self.temperatures_.get(tuple(self.modalities), 1.0), axis=-1)
        seq = [blocks[m] for m in self.modalities if isinstance(blocks[m], SequenceBlock)]
        present = np.logical_or.reduce([b.mask for b in seq])
        return np.where(present[..., None], proba, np.nan)

    def save_state(self, folder) -> dict[str, Any]:
        return {**super().save_state(folder), "window_head": self.window_head_}

    def load_state(self, state: dict[str, Any], folder) -> None:
        self.window_head_ = bool(state["window_head"])
        super().load_state(state, folder)
