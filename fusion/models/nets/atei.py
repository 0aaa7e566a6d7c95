"""ATEI: acoustic–textual emotional inconsistency fusion (after Su et al., 2024).

Two aligned per-turn streams of one session, acoustic and textual, each (n, T, d) with a
presence mask (n, T) and turn start times (n, T):

1. Each stream is projected, given sinusoidal positions from its turns' start times and
   contextualised over the session's turns by a Transformer encoder (`SequenceEncoder.encode`).
2. Bidirectional multi-head cross-attention: the acoustic turns attend to the textual turns
   (C_a) and the textual turns to the acoustic ones (C_t), each over the other stream's present
   turns only.
3. The inconsistency (ATEI) representation of each turn is an MLP of the differences and
   element-wise products of each stream with what it attended to (H_a − C_a, H_a ⊙ C_a,
   H_t − C_t, H_t ⊙ C_t), optionally of the same turn's two streams (H_a − H_t, H_a ⊙ H_t:
   `aligned`), and of a turn-level divergence between the two streams' emotion posteriors when
   the model is given posteriors (`divergence`). A Transformer layer relates the turns'
   inconsistencies across the session, and masked attention pools them. A turn enters the ATEI
   branch only where both streams have it; a session without such a turn has no ATEI vector.
4. A learnable scale on the ATEI vector (`scale`: none, fixed, a learned scalar or a learned
   per-dimension vector) sets its weight against the streams.
5. Fusion of the acoustic, textual and ATEI session vectors: `concat` (an absent vector is
   replaced by a learned per-branch "missing" vector, never zeros), `add` (mean of the present
   vectors), `gated` (attention weights over the present vectors), or `none` (ATEI off: the
   two streams alone, concatenated).

Other modalities (face, say) may join as further branches, each encoded on its own (a
sequence by its own encoder and attention pooling, a pooled row by a linear layer) and fused
with the others; they take no part in the inconsistency.

Outputs: the main head `y` and any extra heads (e.g. binary depression and the PHQ-8 score),
all from the fused vector. Modality dropout hides a whole modality of a training session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from fusion.models.nets.base import Net
from fusion.models.nets.layers import MaskedAttentionPool, drop_modalities, padding_mask, transformer_encoder
from fusion.models.nets.turn_attention import SequenceEncoder

Fusion = Literal["concat", "add", "gated", "none"]
Scale = Literal["none", "fixed", "scalar", "vector"]


class BranchScale(nn.Module):
    """The weight of the ATEI branch: none (1), a fixed constant, a learned scalar, or a learned
    per-dimension vector, each starting at `init`."""

    def __init__(self, kind: Scale, dim: int, init: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "scalar":
            self.weight = nn.Parameter(torch.tensor(float(init)))
        elif kind == "vector":
            self.weight = nn.Parameter(torch.full((dim,), float(init)))
        else:
            self.register_buffer("weight", torch.tensor(1.0 if kind == "none" else float(init)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.weight


class CrossAttention(nn.Module):
    """Turns of one stream attend to the present turns of the other (pre-norm, residual-free:
    the output is what was attended to)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, other: torch.Tensor, other_mask: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(other)
        out, _ = self.attn(self.norm_q(query), kv, kv, key_padding_mask=padding_mask(other_mask),
                           need_weights=False)
        return out


class ATEI(Net):
    """`forward(x, mask, times, div=None)`: x {modality: (n, T, d) or (n, d)}, mask {modality:
    (n, T) or (n,) bool}, times {sequence modality: (n, T) turn starts in seconds}, div {"turn":
    (n, T)} the per-turn posterior divergence (only with `divergence`) → {head: (n, k)}.

    Args:
        dims: feature count of each modality.
        sequence: the modalities given as sequences (both streams must be).
        acoustic, textual: the two streams whose inconsistency is modelled; other modalities
            of `dims` are further branches.
        heads_out: output size of each head; "y" is the main one.
        hidden, layers, heads, dropout, time_scale: the stream encoders and attention.
        fusion: "concat", "add", "gated", or "none" (ATEI off).
        scale, scale_init: the ATEI branch's weight (see `BranchScale`).
        aligned: add the same turn's stream difference and product to the ATEI input.
        divergence: add the per-turn posterior divergence `div` to the ATEI input.
        atei_layers: Transformer layers over the turns' inconsistencies (0: pooling only).
        modality_dropout: during training, hide each present stream with this probability.
    """

    def __init__(self, dims: Mapping[str, int], sequence: list[str], acoustic: str, textual: str,
                 heads_out: Mapping[str, int],
                 hidden: int = 64, layers: int = 1, heads: int = 4, dropout: float = 0.2,
                 time_scale: float = 10.0, fusion: Fusion = "concat", scale: Scale = "scalar",
                 scale_init: float = 1.0, aligned: bool = True, divergence: bool = False,
                 atei_layers: int = 1, modality_dropout: float = 0.0) -> None:
        super().__init__()
        streams = (acoustic, textual)
        if acoustic == textual or any(m not in dims or m not in sequence for m in streams):
            raise ValueError(f"ATEI needs two different sequence streams, acoustic {acoustic!r} and textual "
                             f"{textual!r}; the sequence modalities are {list(sequence)}")
        if "y" not in heads_out:
            raise ValueError("ATEI needs a main head named 'y'")
        self.streams = streams
        self.modalities = [acoustic, textual, *(m for m in dims if m not in streams)]
        self.sequence = set(sequence)
        self.fusion, self.aligned, self.divergence = fusion, aligned, divergence
        self.modality_dropout = modality_dropout
        self.encoders = nn.ModuleDict({
            m: SequenceEncoder(dims[m], hidden, layers, heads, dropout, time_scale) if m in self.sequence
            else nn.Sequential(nn.Linear(dims[m], hidden), nn.GELU(), nn.Dropout(dropout))
            for m in self.modalities})
        branches = len(self.modalities)
        if fusion != "none":
            branches += 1
            self.cross = nn.ModuleDict({m: CrossAttention(hidden, heads, dropout) for m in self.streams})
            n_terms = 4 + 2 * aligned
            self.inconsistency = nn.Sequential(
                nn.Linear(n_terms * hidden + divergence, hidden), nn.GELU(), nn.Dropout(dropout))
            self.atei_encoder = transformer_encoder(hidden, heads, atei_layers, dropout)
            self.atei_pool = MaskedAttentionPool(hidden)
            self.scale = BranchScale(scale, hidden, scale_init)
        if fusion in ("concat", "none"):
            self.missing = nn.Parameter(torch.zeros(branches, hidden))
            nn.init.normal_(self.missing, std=0.02)
            width = branches * hidden
        else:
            width = hidden
            if fusion == "gated":
                self.gate = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self.norm = nn.LayerNorm(width)
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, heads_out["y"])
        self.extra = nn.ModuleDict({k: nn.Linear(hidden, v) for k, v in heads_out.items() if k != "y"})

    def branch_vectors(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                       times: Mapping[str, torch.Tensor],
                       div: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, branches, hidden) the session vectors of the modalities (acoustic, textual, the
        others) and of ATEI, and (n, branches) which of them exist."""
        a, t = self.streams
        avail = drop_modalities(torch.stack([mask[m].any(1) if m in self.sequence else mask[m]
                                             for m in self.modalities], dim=1), self.modality_dropout, self.training)
        masks, vectors, present, states = {}, [], [], {}
        for i, m in enumerate(self.modalities):
            if m in self.sequence:
                masks[m] = mask[m] & avail[:, i:i + 1]
                states[m] = self.encoders[m].encode(x[m], masks[m], times[m])
                vectors.append(self.encoders[m].pool(states[m], masks[m]))
                present.append(masks[m].any(1))
            else:
                vectors.append(self.encoders[m](x[m]))
                present.append(avail[:, i])
        ha, ht, ma, mt = states[a], states[t], masks[a], masks[t]
        if self.fusion != "none":
            ca = self.cross[a](ha, ht, mt)  # the acoustic turns' view of the words
            ct = self.cross[t](ht, ha, ma)  # the textual turns' view of the voice
            terms = [ha - ca, ha * ca, ht - ct, ht * ct]
            if self.aligned:
                terms += [ha - ht, ha * ht]
            if self.divergence:
                if div is None:
                    raise ValueError("this ATEI network was built with divergence=True: pass div={'turn': (n, T)}")
                terms.append(div["turn"].unsqueeze(-1).to(ha.dtype))
            both = ma & mt
            u = self.inconsistency(torch.cat(terms, dim=-1))
            if self.atei_encoder is not None:
                u = self.atei_encoder(u, src_key_padding_mask=padding_mask(both))
            vectors.append(self.scale(self.atei_pool(u, both)))
            present.append(both.any(1))
        return torch.stack(vectors, dim=1), torch.stack(present, dim=1)

    def fuse(self, v: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(n, hidden) the fused session vector from the branch vectors and their presence."""
        p = present.unsqueeze(-1).to(v.dtype)
        if self.fusion in ("concat", "none"):
            v = v * p + self.missing.to(v.dtype).unsqueeze(0) * (1 - p)
            fused = v.flatten(1)
        elif self.fusion == "add":
            fused = (v * p).sum(1) / p.sum(1).clamp_min(1.0)
        else:
            scores = self.gate(v).squeeze(-1).masked_fill(~present, float("-inf"))
            weights = torch.softmax(scores.masked_fill(~present.any(1, keepdim=True), 0.0), dim=1) * present
            fused = torch.einsum("nb,nbd->nd", weights, v)
        return self.body(self.norm(fused))

    def forward(self, x: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                times: Mapping[str, torch.Tensor], div: Mapping[str, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        h = self.fuse(*self.branch_vectors(x, mask, times, div))
        return {"y": self.head(h), **{k: layer(h) for k, layer in self.extra.items()}}

    @classmethod
    def example(cls, batch: int = 4):
        net = cls({"audio": 5, "text": 3, "face": 2}, ["audio", "text"], "audio", "text", {"y": 3, "score": 1},
                  hidden=8, heads=2, divergence=True)
        mask_a = torch.ones(batch, 6, dtype=torch.bool)
        mask_a[:, 4:] = False
        mask_t = mask_a.clone()
        mask_t[:, 1] = False  # a turn the text stream lacks
        x = {"audio": torch.randn(batch, 6, 5), "text": torch.randn(batch, 6, 3), "face": torch.randn(batch, 2)}
        times = torch.arange(6.0).repeat(batch, 1) * 5
        mask = {"audio": mask_a, "text": mask_t, "face": torch.ones(batch, dtype=torch.bool)}
        inputs = {"x": x, "mask": mask, "times": {"audio": times, "text": times},
                  "div": {"turn": torch.rand(batch, 6)}}
        return net, inputs, {"y": (batch, 3), "score": (batch, 1)}
