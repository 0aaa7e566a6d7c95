"""Emotion of each utterance read in its dialogue (`fusion.models.nets.dialogue_context`).

The input is a `dialogue` modality: for every utterance, the utterances around it in its
dialogue as turns (their embeddings, who speaks and whether the speaker changed), so each
utterance is a sample scored by its own output while its neighbours give the context. Trained
with early stopping on inner folds of the training groups (dialogues), temperature-calibrated
on their out-of-fold predictions, and refitted on all the training data (`fusion.models.neural`).
An utterance given alone (the `emotion` extractor over participant turns) is a dialogue of one
turn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fusion.models.base import MODELS
from fusion.models.neural import NeuralFusionModel, NeuralParams


class DialogueContextParams(NeuralParams):
    hidden: int = Field(128, ge=2)
    context: Literal["gru", "transformer"] = "gru"
    layers: int = Field(1, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(5, ge=1)
    max_epochs: int = Field(40, ge=1)

    @model_validator(mode="after")
    def _shapes(self) -> DialogueContextParams:
        if self.hidden % 2:
            raise ValueError(f"hidden ({self.hidden}) must be even (two GRU directions)")
        if self.context == "transformer" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self


@MODELS.register("dialogue-context")
class DialogueContextModel(NeuralFusionModel):
    """A bidirectional GRU (or Transformer) over each utterance's dialogue with a per-utterance head.

    Args:
        hidden: width of the encoders (even).
        context: "gru" or "transformer".
        layers, heads: of the context layer.
        dropout, modality_dropout, calibration, refit, max_inner and the training settings:
            see `fusion.models.neural`.
    """

    Params = DialogueContextParams
    tag = "dialogue-context"
    inputs = frozenset({"pooled", "sequence"})

    def build_net(self, dims, sequence, n_out):
        from fusion.models.nets.dialogue_context import DialogueContext

        p = self.params
        return DialogueContext(dims=dims, sequence=sequence, n_out=n_out, hidden=p.hidden, context=p.context,
                               layers=p.layers, heads=p.heads, dropout=p.dropout,
                               modality_dropout=p.modality_dropout)
