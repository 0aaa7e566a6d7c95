"""Neural calibrated late fusion: per-modality heads trained jointly under the availability
mask with log-linear pooling (`fusion.models.nets.late_fusion_nn`), calibrated on inner
folds like `late-fusion`.

The fused output and each modality's own head are trained together (each head on the samples
that have its modality, weighted by `aux_weight`), with modality dropout so that the pooled
prediction stays good when modalities are missing. A missing modality is masked out of the
pool, never zero-filled; any subset of modalities is predicted without refitting.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.special import log_softmax

from fusion.data.sequences import available
from fusion.models.base import MODELS, Blocks
from fusion.models.neural import NeuralFusionModel, NeuralParams


class LateFusionNNParams(NeuralParams):
    layers: int = Field(1, ge=1)
    aux_weight: float = Field(0.5, ge=0)


@MODELS.register("late-fusion-nn")
class NeuralLateFusion(NeuralFusionModel):
    """Per-modality MLP heads, log-linear pooling of their class probabilities under the
    availability mask (a weighted mean of their scores for regression), temperature-calibrated
    on inner-validation predictions.

    Args:
        hidden, layers, dropout: each modality's head.
        aux_weight: weight of each head's own loss beside the fused loss.
        modality_dropout: training-time probability of hiding an available modality.
        calibration: "temperature" (per modality subset) or "none".
        refit, max_inner: see `fusion.models.neural`; and the training settings (lr, …).
    """

    Params = LateFusionNNParams
    tag = "late-nn"

    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.late_fusion_nn import LateFusionHeads

        p = self.params
        return LateFusionHeads(dims=dims, n_out=n_out, task=self.task, hidden=p.hidden, layers=p.layers,
                               dropout=p.dropout, modality_dropout=p.modality_dropout)

    def lit_heads(self, n_out: int) -> list:
        from fusion.lit import Head

        main = super().lit_heads(n_out)[0]
        return [main, *(Head(f"y@{m}", main.task, n_out, weight=self.params.aux_weight,
                             class_weights=main.class_weights) for m in self.modalities)]

    def head_targets(self, y: np.ndarray, masks: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        missing = -1 if self.task == "classification" else np.nan
        return {"y": y, **{f"y@{m}": np.where(masks[m], y, missing).astype(y.dtype) for m in self.modalities}}

    def modality_contributions(self, blocks: Blocks) -> np.ndarray | None:
        """Each modality's share of the predicted class's fused logit: a_m w_m (log p_m,c −
        mean_k log p_mk), as for the log-linear stacker."""
        import torch

        if self.task != "classification":
            return None
        logp = np.stack([log_softmax(self._forward(self.net_, self.scalers_, blocks, self.modalities,
                                                   key=f"y@{m}"), axis=1) for m in self.modalities], axis=1)
        avail = np.column_stack([available(blocks[m]) for m in self.modalities])
        centred = logp - logp.mean(axis=2, keepdims=True)
        cls = self.predict_proba(blocks).argmax(1)
        with torch.no_grad():
            w = self.net_.weights().numpy()
        return centred[np.arange(len(cls)), :, cls] * avail * w[None, :]
