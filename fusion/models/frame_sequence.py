"""Frame-sequence emotion recognition: a convolutional network over each sample's frames
(log-Mel frames from `logmel` with `level: frames`, or openSMILE low-level descriptors with
`level: lld`), given as `pool: sequence` inputs, with attention pooling and augmentation
(`fusion.models.nets.frame_sequence`); early stopping on inner folds and temperature calibration as
for every neural model (`fusion.models.neural`). For users with more data or a GPU; the
pooled-functional learners are the stronger choice on small corpora.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from fusion.models.base import MODELS
from fusion.models.neural import NeuralFusionModel, NeuralParams


class FrameSequenceParams(NeuralParams):
    layers: int = Field(3, ge=0)
    kernel: int = Field(5, ge=1)
    time_mask: float = Field(0.2, ge=0, lt=1)
    feature_mask: float = Field(0.15, ge=0, lt=1)
    gain: float = Field(0.1, ge=0)
    modality_dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel must be odd (frames keep their count), got {v}")
        return v


@MODELS.register("frame-sequence")
class FrameSequenceModel(NeuralFusionModel):
    """Convolutions over frames, attention pooling, a linear head.

    Args:
        hidden, layers, kernel, dropout: the encoders (`kernel` odd; dilation doubles per layer).
        time_mask, feature_mask, gain: training augmentation (fraction of frames and of
            channels masked, sd of a random per-sample offset of the standardised frames).
        modality_dropout, calibration, refit, max_inner and the training settings: see
            `fusion.models.neural`.
    """

    Params = FrameSequenceParams
    tag = "frame-sequence"
    inputs = frozenset({"pooled", "sequence"})

    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.frame_sequence import FrameCNN

        p = self.params
        return FrameCNN(dims=dims, sequence=sequence, n_out=n_out, hidden=p.hidden, layers=p.layers,
                        kernel=p.kernel, dropout=p.dropout, modality_dropout=p.modality_dropout,
                        time_mask=p.time_mask, feature_mask=p.feature_mask, gain=p.gain)
