"""A Hugging Face text encoder (BERT-like, from a local folder or a saved config) with masked
mean pooling, dropout and a linear head, fine-tuned end to end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fusion.models.nets.base import Net


class HFEncoder(Net):
    """`forward(x, mask)`: x {modality: (n, L) token ids}, mask {modality: (n, L) bool} → (n, n_out).

    Args:
        modality: the key of the token-id input.
        n_out: classes, or 1 for a score.
        model: a local folder (or cached Hugging Face id) whose weights initialise the encoder;
            or None with `config` (a saved model's encoder configuration: weights loaded after).
        config: the encoder's configuration as a dict (`model_type` included).
        dropout: before the head.
    """

    def __init__(self, modality: str, n_out: int, model: str | None = None,
                 config: Mapping[str, Any] | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if model is None and config is None:
            raise ValueError("HFEncoder needs a model folder or a saved encoder configuration")

        def build(**kw):
            if model is not None:
                return AutoModel.from_pretrained(model, **kw)
            cfg = dict(config)
            return AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg), **kw)

        try:  # the pooler of BERT-like models is not used (mean pooling): leave it out
            self.encoder = build(add_pooling_layer=False)
        except TypeError:
            self.encoder = build()
        # fp32 weights (autocast gives the mixed precision); from_pretrained returns eval mode
        self.encoder.float().train()
        self.modality = modality
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, n_out)

    def encoder_config(self) -> dict[str, Any]:
        return self.encoder.config.to_dict()

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ids, attn = x[self.modality].long(), mask[self.modality]
        # ids are left-aligned: the columns past the batch's longest text are padding only
        width = max(int(attn.sum(1).max()), 1) if attn.numel() else attn.shape[1]
        ids, attn = ids[:, :width], attn[:, :width]
        hidden = self.encoder(input_ids=ids, attention_mask=attn.long()).last_hidden_state
        w = attn.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))

    @classmethod
    def example(cls, batch: int = 4):
        from transformers import BertConfig

        cfg = BertConfig(vocab_size=2000, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32).to_dict()
        net = cls("text", 3, config=cfg)
        ids = torch.randint(1, 2000, (batch, 10))
        mask = torch.ones(batch, 10, dtype=torch.bool)
        mask[:, 7:] = False
        return net, {"x": {"text": ids}, "mask": {"text": mask}}, {"y": (batch, 3)}
