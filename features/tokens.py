"""Token ids of what was said, for models that fine-tune a text encoder (`text-finetune`).

The same texts as the `sentence` extractor (a MELD utterance, a participant's turns, the
words of a window), tokenised by a local Hugging Face tokenizer — by default the bundled
all-MiniLM-L6-v2's, which works offline — and stored as `tok_000 … tok_<max_length-1>`:
the ids of the first `max_length` tokens (special tokens included), NaN past the end of the
text (the attention mask is where the ids are present; nothing is padded with a real id).
A whole sample made of several turns is their concatenation.

With `context: k` (an utterance sample whose adapter gives its dialogue's earlier utterances,
MELD) the text is `Speaker: words` and the `k` utterances before it, most recent first and each
`Speaker: words`, follow as the tokenizer's second segment; only that segment is truncated, from
its oldest end, so the utterance itself is always whole. A sample without context (a dialogue's
first utterance, a participant turn) gets the utterance alone.
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
    context: int = Field(0, ge=0, le=64)


@EXTRACTORS.register("tokens")
class TokenExtractor(SentenceEmbeddingExtractor):
    """Token ids per segment or whole sample.

    Args:
        model: the tokenizer: "all-MiniLM-L6-v2" (bundled), a Hugging Face id or a local folder.
        max_length: tokens kept (longer texts are truncated, with a warning).
        speaker: whose turns count (as for the `sentence` extractor).
        context: earlier utterances of the dialogue given after the utterance (see above).
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
        ids, starts, ends, texts, pairs = [], [], [], [], []
        for sample, segments in items:
            warnings = result.warnings.setdefault(sample.sample_id, [])
            try:
                if segments is not None:
                    seg_texts = self._segment_texts(sample, segments)
                    spans = [(s.start, s.end) for s in segments]
                    seg_pairs = [None] * len(seg_texts)
                else:
                    turns, duration = self._turns(sample, warnings)
                    seg_texts, spans = [" ".join(turns)], [(0.0, duration)]
                    seg_pairs = [None]
                    if self.params.context and sample.text is not None:
                        seg_texts = [self._said(sample.speaker, sample.text)]
                        before = [self._said(who, words) for who, words in sample.context[-self.params.context:]]
                        seg_pairs = [" | ".join(reversed(before)) or None]
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                result.errors[sample.sample_id] = err
                continue
            pairs += seg_pairs
            ids += [sample.sample_id] * len(spans)
            starts += [s for s, _ in spans]
            ends += [e for _, e in spans]
            texts += seg_texts
        if not texts:
            return result
        rows = [self._encode(t, pair, sid, result) for sid, t, pair in zip(ids, texts, pairs, strict=True)]
        values = np.full((len(texts), self.params.max_length), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            values[i, :len(row)] = row
        index = pd.MultiIndex.from_arrays([ids, starts, ends], names=INDEX)
        result.frame = pd.DataFrame(values, index=index, columns=self.feature_names)
        return result

    @staticmethod
    def _said(speaker: str | None, words: str) -> str:
        return f"{speaker}: {words}" if speaker else words

    def _encode(self, text: str, pair: str | None, sid: str, result: BatchResult) -> list[int]:
        """The token ids of `text` (and its context `pair`, truncated first and from its far end)."""
        limit = self.params.max_length
        alone = self.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        if len(alone) > limit:
            result.warnings[sid].append(f"sample {sid!r}: text longer than {limit} tokens is truncated")
            return alone[:limit - 1] + alone[-1:]
        if pair is None:
            return alone
        room = limit - len(alone) - 1  # the pair's own separator
        if room < 1:
            return alone
        extra = self.tokenizer(pair, add_special_tokens=False, verbose=False)["input_ids"][:room]
        return alone + extra + alone[-1:]
