"""Turn-level attention fusion: each modality's per-turn sequence encoded and attention-pooled
(`fusion.models.nets.turn_attention`), the available modalities' session vectors averaged,
trained with modality dropout and temperature-calibrated on inner folds.

The first model over per-turn sequence blocks (`pool: sequence` inputs); modalities given
pooled are used as they are. A missing modality, or a turn one modality lacks, is masked.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from fusion.models.base import MODELS
from fusion.models.neural import NeuralFusionModel, NeuralParams


class TurnAttentionParams(NeuralParams):
    layers: int = Field(1, ge=0)
    heads: int = Field(4, ge=1)
    time_scale: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TurnAttentionParams:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


@MODELS.register("turn-attention")
class TurnAttentionFusion(NeuralFusionModel):
    """Per-modality Transformer encoder over turns with masked attention pooling, fused by a
    masked mean over the available modalities.

    Args:
        hidden: width of every encoder (divisible by `heads`).
        layers: Transformer layers per sequence modality (0: attention pooling only).
        heads: attention heads.
        time_scale: seconds per unit of the sinusoidal turn positions.
        dropout, modality_dropout, calibration, refit, max_inner and the training settings:
            see `fusion.models.neural`.
    """

    Params = TurnAttentionParams
    tag = "turn-attention"
    inputs = frozenset({"pooled", "sequence"})
    net_name = "turn-attention"

    def net_kwargs(self, dims, sequence, n_out) -> dict[str, Any]:
        p = self.params
        return {"dims": dims, "sequence": sequence, "n_out": n_out, "hidden": p.hidden, "layers": p.layers,
                "heads": p.heads, "dropout": p.dropout, "modality_dropout": p.modality_dropout,
                "time_scale": p.time_scale}
