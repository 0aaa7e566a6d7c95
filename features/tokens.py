"""Token ids of what was said, for models that fine-tune a text encoder (`text-finetune`).

The same texts as the `sentence` extractor (a MELD utterance, a participant's turns, the
words of a window), tokenised by a local Hugging Face tokenizer — by default the bundled
all-MiniLM-L6-v2's, which works offline — and stored as `tok_000 … tok_<max_length-1>`:
the ids of the first `max_length` tokens (special tokens included), NaN past the end of the
text (the attention mask is where the ids are present; nothing is padded with a real id).
A whole sample made of several turns is their concatenation.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from features.base import INDEX, BatchResult, Params
from features.registry import EXTRACTORS
from features.text import DEFAULT_MODEL, SentenceEmbeddingExtractor, model_fingerprint, resolve_model


class TokenParams(Params):
    model: str = DEFAULT_MODEL
    max_length: int = Field(64, ge=4, le=4096)
    speaker: str | None = "Participant"


@EXTRACTORS.register("tokens")
class TokenExtractor(SentenceEmbeddingExtractor):
    """Token ids per segment or whole sample.

    Args:
        model: the tokenizer: "all-MiniLM-L6-v2" (bundled), a Hugging Face id or a local folder.
        max_length: tokens kept (longer texts are truncated, with a warning).
        speaker: whose turns count (as for the `sentence` extractor).
    """

    name = "tokens"
    version = "1"
    Params = TokenParams
    chunk_size = 4096
    nan_is_padding = True

    @functools.cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_model(self.params.model))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("tokenizer", None)
        return state

    def check(self) -> None:
        _ = self.tokenizer

    @property
    def feature_names(self) -> list[str]:
        return [f"tok_{i:03d}" for i in range(self.params.max_length)]

    def segments_as_samples(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame  # the same token columns for a segment and for a whole sample

    def library_versions(self) -> dict[str, str]:
        import transformers

        return {"transformers": transformers.__version__,
                "model": model_fingerprint(resolve_model(self.params.model))}

    def process_samples(self, items) -> BatchResult:
        result = BatchResult(None, {}, {})
        ids, starts, ends, texts = [], [], [], []
        for sample, segments in items:
            warnings = result.warnings.setdefault(sample.sample_id, [])
            try:
                if segments is not None:
                    seg_texts = self._segment_texts(sample, segments)
                    spans = [(s.start, s.end) for s in segments]
                else:
                    turns, duration = self._turns(sample, warnings)
                    seg_texts, spans = [" ".join(turns)], [(0.0, duration)]
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                result.errors[sample.sample_id] = err
                continue
            ids += [sample.sample_id] * len(spans)
            starts += [s for s, _ in spans]
            ends += [e for _, e in spans]
            texts += seg_texts
        if not texts:
            return result
        full = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for sid in sorted({sid for sid, t in zip(ids, full, strict=True) if len(t) > self.params.max_length}):
            result.warnings[sid].append(f"sample {sid!r}: text longer than {self.params.max_length} tokens is "
                                        "truncated")
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.params.max_length)
        values = np.full((len(texts), self.params.max_length), np.nan, dtype=np.float32)
        for i, row in enumerate(enc["input_ids"]):
            values[i, :len(row)] = row
        index = pd.MultiIndex.from_arrays([ids, starts, ends], names=INDEX)
        result.frame = pd.DataFrame(values, index=index, columns=self.feature_names)
        return result
