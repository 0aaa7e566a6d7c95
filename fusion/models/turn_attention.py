"""Turn-level attention fusion: each modality's per-turn sequence encoded and attention-pooled
(`fusion.models.nets.turn_attention`), the available modalities' session vectors averaged,
trained with modality dropout and temperature-calibrated on inner folds.

The first model over per-turn sequence blocks (`pool: sequence` inputs); modalities given
pooled are used as they are. A missing modality, or a turn one modality lacks, is masked.
"""

from __future__ import annotations

from fusion.models.base import MODELS
from fusion.models.neural import AttentionParams, NeuralFusionModel


class TurnAttentionParams(AttentionParams):
    """Transformer layers per sequence modality, attention heads, seconds per position unit."""


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

    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.turn_attention import TurnAttention

        p = self.params
        return TurnAttention(dims=dims, sequence=sequence, n_out=n_out, hidden=p.hidden, layers=p.layers,
                             heads=p.heads, dropout=p.dropout, modality_dropout=p.modality_dropout,
                             time_scale=p.time_scale)
