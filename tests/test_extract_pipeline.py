"""`fusion extract` over every modality: bad inputs recorded per sample, the rest kept;
rows of all modalities join on (sample_id, start, end); the Dask executor agrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures import write_wav

from features.align import SegmentationConfig, Segmenter
from features.audio import OpenSmileExtractor
from features.runner import run_extraction
from features.store import FeatureStore
from fusion.config.load import load_config
from fusion.config.schema import ExtractConfig
from fusion.datasets.daic_woz import DaicWoz
from fusion.extraction import extract

ROOT = Path(__file__).resolve().parents[1]


def config(corpus: Path, store: Path, **sets) -> ExtractConfig:
    items = [f"dataset.root={corpus}", f"store={store}", "progress=false", "n_jobs=1",
             *[f"{k}={v}" for k, v in sets.items()]]
    return load_config(ExtractConfig, ROOT / "configs/extract/demo_multimodal.yaml", items)


def errors(result, name) -> pd.DataFrame:
    return pd.read_parquet(result["feature_sets"][name]["errors_path"])


@pytest.mark.slow
def test_every_modality_with_bad_inputs(demo_corpus, tmp_path):
    c = demo_corpus
    # 300: audio cut short mid-file (truncated data chunk) → warnings, not a failure
    wav = c / "300_P" / "300_AUDIO.wav"
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 3])
    # 301: zero-length audio
    write_wav(c / "301_P" / "301_AUDIO.wav", np.zeros(0, np.float32))
    # 302: silence
    info = sf.info(c / "302_P" / "302_AUDIO.wav")
    write_wav(c / "302_P" / "302_AUDIO.wav", np.zeros(int(info.frames), np.float32))
    # 303: transcript in Latin-1, not UTF-8
    t = c / "303_P" / "303_TRANSCRIPT.csv"
    t.write_bytes(t.read_text(encoding="utf-8").replace("i'm", "caf\u00e9").encode("latin-1"))
    # 304: no face files at all (one modality missing); every AU row failed in 305
    for f in (c / "304_P").glob("*CLNF*"):
        f.unlink()
    au = c / "305_P" / "305_CLNF_AUs.txt"
    lines = au.read_text().splitlines()
    fixed = [lines[0]] + [", ".join(v if i != 3 else "0" for i, v in enumerate(line.split(", ")))
                          for line in lines[1:]]
    au.write_text("\n".join(fixed) + "\n")

    result = extract(config(c, tmp_path / "store"))
    fs = result["feature_sets"]
    # audio: 301 fails (zero samples), 303 fails at turn level only (its transcript)
    assert fs["logmel_session"]["failed_ids"] == ["301"]
    assert set(fs["egemaps_turn"]["failed_ids"]) == {"301", "303"}
    e = errors(result, "egemaps_turn").set_index("sample_id")
    assert "301_AUDIO.wav: audio has zero samples" in e.loc["301", "error"]
    assert "303_TRANSCRIPT.csv: transcript is not valid UTF-8" in e.loc["303", "error"]
    warned = errors(result, "egemaps_turn").query("level == 'warning'")
    assert any("300_TRANSCRIPT.csv" in m and "after the audio ends" in m for m in warned["error"])
    assert any("300_AUDIO.wav: truncated WAV file" in m for m in warned["error"])
    assert any("302_AUDIO.wav: audio is silent" in m for m in warned["error"])
    # text needs only the transcript
    assert fs["text_session"]["failed_ids"] == ["303"] and fs["text_turn"]["failed_ids"] == ["303"]
    # face: 304 has no files, 305 no usable frame
    assert fs["face_session"]["failed_ids"] == ["304", "305"]
    fe = errors(result, "face_session").set_index("sample_id")
    assert "sample '304' has no face or face_au or face_gaze or face_pose file" in fe.loc["304", "error"]
    assert "305_CLNF_AUs.txt: no usable frame" in fe.loc["305", "error"]
    # every good item kept: per feature set, computed + failed = 6
    for name, s in fs.items():
        assert s["computed"] + s["failed"] == 6, name
    # turn rows of the three modalities share their (sample_id, start, end) index
    store = FeatureStore(tmp_path / "store")
    audio = store.read(Path(fs["logmel_turn"]["path"]))
    text = store.read(Path(fs["text_turn"]["path"]))
    face = store.read(Path(fs["face_turn"]["path"]))
    for sid in ("300", "302"):
        assert text.loc[sid].index.equals(face.loc[sid].index) and len(text.loc[sid]) >= 3
    assert audio.loc["302"].index.equals(text.loc["302"].index)
    # 300's audio was cut: turns past its end are left out (or cut) for every modality alike
    assert audio.loc["300"].index.equals(text.loc["300"].index)
    assert text.loc["300"].index.get_level_values("end").max() <= sf.info(c / "300_P" / "300_AUDIO.wav").duration
    assert not np.isnan(text.to_numpy()).any()

    # a re-run computes nothing new except the failed samples, which fail again
    again = extract(config(c, tmp_path / "store"))
    for name, s in again["feature_sets"].items():
        assert s["computed"] == 0 and s["skipped"] == 6 - s["failed"], name


@pytest.mark.slow
def test_dask_local_cluster_matches_local(demo_corpus, tmp_path):
    samples = DaicWoz(demo_corpus).samples()
    seg = Segmenter(SegmentationConfig(level="turn"))
    local = run_extraction(samples, OpenSmileExtractor(), FeatureStore(tmp_path / "a"), "demo",
                           segmenter=seg, progress=False)
    dask = run_extraction(samples, OpenSmileExtractor(), FeatureStore(tmp_path / "b"), "demo",
                          segmenter=seg, executor="dask", n_jobs=2, progress=False)
    assert dask.computed == 6 and dask.failed == 0
    pd.testing.assert_frame_equal(pd.read_parquet(local.path), pd.read_parquet(dask.path))


def test_dask_config_keys(tmp_path):
    cfg = config(tmp_path, tmp_path / "s", executor="dask", scheduler="tcp://127.0.0.1:8786")
    assert cfg.executor == "dask" and cfg.scheduler == "tcp://127.0.0.1:8786"
