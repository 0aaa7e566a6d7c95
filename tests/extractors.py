"""A tiny extractor used to test the store and runner (not registered)."""

from __future__ import annotations

import time

import numpy as np

from features.audio import cut_segments, load_audio
from features.base import Extractor, Params, feature_frame


class RmsParams(Params):
    scale: float = 1.0
    delay: float = 0.0
    nan_for: list[str] = []


class RmsExtractor(Extractor):
    """RMS level and peak of each segment, times `scale`; sleeps `delay` s per sample."""

    name = "rms"
    version = "1"
    modality = "audio"
    media = ("audio",)
    Params = RmsParams

    @property
    def feature_names(self):
        return ["rms", "peak"]

    def library_versions(self):
        return {"numpy": np.__version__}

    def process_sample(self, sample, segments):
        path = self.source_files(sample)["audio"]
        signal, sr = load_audio(path)
        spans, chunks, warnings = cut_segments(signal, sr, segments, path)
        values = [[self.params.scale * float(np.sqrt(np.mean(c ** 2))),
                   self.params.scale * float(np.max(np.abs(c)))] for c in chunks]
        time.sleep(self.params.delay)
        if sample.sample_id in self.params.nan_for:
            values[0][1] = float("nan")
        frame = feature_frame(sample.sample_id, spans, np.array(values), self.feature_names)
        frame.attrs["warnings"] = warnings
        return frame
