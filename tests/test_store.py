"""Feature store: content addressing, invalidation, resume, errors, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures import RmsExtractor, tone, write_wav

from features.align import SegmentationConfig, Segmenter
from features.audio import OpenSmileExtractor
from features.base import INDEX
from features.runner import feature_set_key, run_extraction
from features.store import FeatureStore, read_journal
from fusion.datasets.daic_woz import DaicWoz

TESTS = Path(__file__).resolve().parent
TURNS = Segmenter(SegmentationConfig(level="turn"))


def run(corpus: Path, store: FeatureStore, extractor=None, segmenter=None, **kw):
    samples = DaicWoz(corpus).samples()
    return run_extraction(samples, extractor or RmsExtractor(), store, "demo",
                          segmenter=segmenter, progress=False, **kw)


def test_roundtrip_layout_and_metadata(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    summary = run(demo_corpus, store)
    assert (summary.computed, summary.skipped, summary.failed) == (6, 0, 0)
    key = feature_set_key("demo", RmsExtractor(), Segmenter())
    path = store.path(key)
    assert path == tmp_path / "store" / "demo" / f"rms-{key.param_hash[:16]}.parquet"
    meta = store.read_metadata(path)
    assert meta["extractor"] == "rms" and meta["extractor_version"] == "1"
    assert meta["params"] == {"scale": 1.0, "delay": 0.0, "nan_for": []}
    assert meta["library_versions"] == {"numpy": np.__version__}
    assert set(meta["sources"]) == {"300", "301", "302", "303", "304", "305"}
    assert all(len(s["hash"]) == 32 and "audio" in s["files"] for s in meta["sources"].values())
    frame = store.read(key)
    assert list(frame.index.names) == INDEX and list(frame.columns) == ["rms", "peak"]
    # a whole-sample row runs from 0 to the recording's duration
    import soundfile as sf
    for sid, start, end in frame.index:
        assert start == 0.0
        assert end == pytest.approx(sf.info(demo_corpus / f"{sid}_P" / f"{sid}_AUDIO.wav").duration)
    assert not store.parts_dir(key).exists()
    assert len(store.read_errors(key)) == 0


def test_rerun_skips_everything_and_touch_does_not_invalidate(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    run(demo_corpus, store)
    wav = demo_corpus / "302_P" / "302_AUDIO.wav"
    os.utime(wav, (time.time() + 5, time.time() + 5))  # same bytes, new mtime
    again = run(demo_corpus, store)
    assert (again.computed, again.skipped) == (0, 6)


def test_parameter_change_writes_a_new_file(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    first = run(demo_corpus, store, RmsExtractor(scale=1.0))
    before = Path(first.path).read_bytes()
    second = run(demo_corpus, store, RmsExtractor(scale=2.0))
    assert second.path != first.path and second.computed == 6
    assert Path(first.path).read_bytes() == before
    a, b = store.read(Path(first.path)), store.read(Path(second.path))
    np.testing.assert_allclose(b.to_numpy(), 2 * a.to_numpy(), rtol=1e-6)
    # the segmentation is part of the parameters too
    turns = run(demo_corpus, store, segmenter=TURNS)
    assert turns.path not in (first.path, second.path) and turns.computed == 6


def test_changed_source_file_recomputes_only_that_sample(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    run(demo_corpus, store)
    write_wav(demo_corpus / "303_P" / "303_AUDIO.wav", tone(5.0, seed=3))
    again = run(demo_corpus, store)
    assert again.computed_ids == ["303"] and again.skipped == 5
    frame = store.read(Path(again.path))
    assert frame.loc["303"].index.get_level_values("end")[0] == pytest.approx(5.0)
    assert frame.index.get_level_values("sample_id").nunique() == 6


def test_changed_transcript_invalidates_turn_features_only(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    run(demo_corpus, store)
    run(demo_corpus, store, segmenter=TURNS)
    t = demo_corpus / "304_P" / "304_TRANSCRIPT.csv"
    t.write_text(t.read_text(encoding="utf-8").replace("Participant\t", "Participant\tum ", 1),
                 encoding="utf-8")
    assert run(demo_corpus, store).computed == 0
    assert run(demo_corpus, store, segmenter=TURNS).computed_ids == ["304"]


def test_library_version_change_recomputes(demo_corpus, tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "store")
    run(demo_corpus, store)
    monkeypatch.setattr(RmsExtractor, "library_versions", lambda self: {"numpy": "0.0"})
    again = run(demo_corpus, store)
    assert again.computed == 6
    assert any("library versions changed" in n for n in again.notes)


def test_corrupt_wav_and_empty_transcript_are_recorded_others_kept(demo_corpus, tmp_path):
    (demo_corpus / "301_P" / "301_AUDIO.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    (demo_corpus / "302_P" / "302_TRANSCRIPT.csv").write_text("", encoding="utf-8")
    store = FeatureStore(tmp_path / "store")
    summary = run(demo_corpus, store, OpenSmileExtractor(), segmenter=TURNS)
    assert summary.failed_ids == ["301", "302"]
    assert summary.computed == 4
    frame = store.read(Path(summary.path))
    assert sorted(frame.index.get_level_values("sample_id").unique()) == ["300", "303", "304", "305"]
    assert frame.shape[1] == 88 and np.isfinite(frame.to_numpy()).all()
    errors = pd.read_parquet(summary.errors_path).set_index("sample_id")
    assert set(errors.index) == {"301", "302"}
    assert "301_AUDIO.wav" in errors.loc["301", "error"]
    assert "cannot decode audio" in errors.loc["301", "error"]
    assert "302_TRANSCRIPT.csv" in errors.loc["302", "error"] and "empty" in errors.loc["302", "error"]
    assert (errors["level"] == "error").all()

    # once fixed, only the two are computed and no error is left (a warning about the new
    # content, e.g. clipping, may be)
    import shutil
    src = demo_corpus.parent / "fixed"
    from fusion.synthetic.demo_corpus import generate_demo_corpus
    generate_demo_corpus(src, n_sessions=6, seed=7, questions=3)
    shutil.copy(src / "301_P" / "301_AUDIO.wav", demo_corpus / "301_P" / "301_AUDIO.wav")
    shutil.copy(src / "302_P" / "302_TRANSCRIPT.csv", demo_corpus / "302_P" / "302_TRANSCRIPT.csv")
    again = run(demo_corpus, store, OpenSmileExtractor(), segmenter=TURNS)
    assert again.computed_ids == ["301", "302"] and again.skipped == 4 and again.failed == 0
    assert not (pd.read_parquet(again.errors_path)["level"] == "error").any()


def test_missing_media_file_is_an_error_for_that_sample(demo_corpus, tmp_path):
    (demo_corpus / "305_P" / "305_AUDIO.wav").unlink()
    store = FeatureStore(tmp_path / "store")
    summary = run(demo_corpus, store)
    assert summary.failed_ids == ["305"] and summary.computed == 5
    err = pd.read_parquet(summary.errors_path)
    assert "no audio" in err["error"].iloc[0]


def test_failed_write_leaves_previous_file_intact(demo_corpus, tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "store")
    first = run(demo_corpus, store)
    before = Path(first.path).read_bytes()
    write_wav(demo_corpus / "300_P" / "300_AUDIO.wav", tone(3.0, seed=9))

    real_write = pq.write_table

    def torn_write(table, where, **kw):
        if str(where).endswith(".tmp") and "rms-" in str(where) and ".parts" not in str(where):
            with open(where, "wb") as f:
                f.write(b"PAR1 half a file")
            raise OSError("disk full")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(OSError, match="disk full"):
        run(demo_corpus, store)
    assert Path(first.path).read_bytes() == before
    assert not list(Path(first.path).parent.glob(".*.tmp"))
    # the finished sample survived as a part, so the next run has nothing left to compute
    monkeypatch.setattr(pq, "write_table", real_write)
    again = run(demo_corpus, store)
    assert again.computed == 0 and again.skipped == 6
    assert store.read(Path(again.path)).loc["300"].index.get_level_values("end")[0] == pytest.approx(3.0)


def test_resume_after_kill_recomputes_nothing_finished(demo_corpus, tmp_path):
    store_root = tmp_path / "store"
    script = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from fixtures import RmsExtractor
from features.runner import run_extraction
from features.store import FeatureStore, read_journal
from fusion.datasets.daic_woz import DaicWoz
samples = DaicWoz({str(demo_corpus)!r}).samples()
run_extraction(samples, RmsExtractor(delay=0.6), FeatureStore({str(store_root)!r}), "demo", progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    key = feature_set_key("demo", RmsExtractor(delay=0.6), Segmenter())
    parts = FeatureStore(store_root).parts_dir(key)
    def finished() -> set[str]:
        return {sid for sid, st in read_journal(parts).latest.items() if st["status"] == "done"}

    deadline = time.time() + 60
    while time.time() < deadline and len(finished()) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = finished()
    assert 2 <= len(finished) < 6
    assert not FeatureStore(store_root).path(key).exists()

    store = FeatureStore(store_root)
    summary = run(demo_corpus, store, RmsExtractor(delay=0.6))
    assert set(summary.computed_ids).isdisjoint(finished)
    assert set(summary.computed_ids) | finished == {"300", "301", "302", "303", "304", "305"}
    assert summary.skipped == len(finished)
    assert any("resuming" in n for n in summary.notes)
    assert store.read(key).index.get_level_values("sample_id").nunique() == 6
    assert not parts.exists()


def test_parallel_matches_serial(demo_corpus, tmp_path):
    serial = run(demo_corpus, FeatureStore(tmp_path / "a"), OpenSmileExtractor(), n_jobs=1)
    parallel = run(demo_corpus, FeatureStore(tmp_path / "b"), OpenSmileExtractor(), n_jobs=2)
    a = pd.read_parquet(serial.path)
    b = pd.read_parquet(parallel.path)
    pd.testing.assert_frame_equal(a, b)


def test_resolve_names_and_ambiguity(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    s1 = run(demo_corpus, store, RmsExtractor(scale=1.0))
    run(demo_corpus, store, RmsExtractor(scale=3.0))
    stem = Path(s1.path).stem
    assert store.resolve(stem) == Path(s1.path)
    assert store.resolve(f"demo/{stem}") == Path(s1.path)
    with pytest.raises(ValueError, match="ambiguous"):
        store.resolve("rms")
    with pytest.raises(FileNotFoundError, match="it holds"):
        store.resolve("opensmile")


def test_nan_values_are_kept_and_warned_about_per_sample(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    summary = run(demo_corpus, store, RmsExtractor(nan_for=["301", "304"]), chunk_size=3)
    assert summary.computed == 6 and summary.warnings == 2
    frame = store.read(Path(summary.path))
    assert np.isnan(frame.loc["301", "peak"]).all() and np.isfinite(frame.loc["300"].to_numpy()).all()
    warned = pd.read_parquet(summary.errors_path)
    assert sorted(warned["sample_id"]) == ["301", "304"]
    assert (warned["level"] == "warning").all()
    assert warned["error"].str.contains("1 NaN/inf value\\(s\\) in 1 feature\\(s\\) \\(e.g. peak\\); kept as NaN").all()


# --- two runs, torn streams, read-only stores, permissions, workers ----------------------------

def _extract_script(corpus: Path, store_root: Path, delay: float, out: Path, scale: float = 1.0) -> str:
    return f"""
import json, sys
sys.path.insert(0, {str(TESTS)!r})
from fixtures import RmsExtractor
from features.runner import run_extraction
from features.store import FeatureStore
from fusion.datasets.daic_woz import DaicWoz
samples = DaicWoz({str(corpus)!r}).samples()
s = run_extraction(samples, RmsExtractor(delay={delay}, scale={scale}), FeatureStore({str(store_root)!r}), "demo",
                   progress=False)
open({str(out)!r}, "w").write(json.dumps(s.to_dict()))
"""


def test_two_runs_on_one_store_both_land_every_sample(demo_corpus, tmp_path):
    store_root = tmp_path / "store"
    key = feature_set_key("demo", RmsExtractor(delay=0.3), Segmenter())
    parts = FeatureStore(store_root).parts_dir(key)

    def start(i):
        return subprocess.Popen([sys.executable, "-c", _extract_script(demo_corpus, store_root, 0.3,
                                                                        tmp_path / f"{i}.json")],
                                stderr=subprocess.PIPE, text=True)

    first = start(0)
    deadline = time.time() + 60
    while not parts.exists() and time.time() < deadline:  # the second starts while the first works
        time.sleep(0.02)
    procs = [first, start(1)]
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    import json
    summaries = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    store = FeatureStore(store_root)
    assert store.read(key).index.get_level_values("sample_id").nunique() == 6, (summaries, errs)
    # one run computed everything; the other waited for it and found every sample cached
    assert sorted(s["computed"] for s in summaries) == [0, 6]
    assert sorted(s["skipped"] for s in summaries) == [0, 6]
    assert any("waiting for" in e for e in errs)
    assert not parts.exists() and not store.lock_path(key).exists()


def test_a_held_lock_makes_the_second_run_wait_then_refuse_and_a_stale_lock_is_taken(demo_corpus, tmp_path):
    import json
    import socket

    from features.store import StoreLockedError

    store = FeatureStore(tmp_path / "store")
    key = feature_set_key("demo", RmsExtractor(), Segmenter())
    lock = store.lock_path(key)
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}))
        with pytest.raises(StoreLockedError, match=rf"pid {holder.pid} on host .* since 2026-01-01T00:00:00") as err:
            run(demo_corpus, store, lock_timeout=1.0)
        assert str(lock) in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    summary = run(demo_corpus, store, lock_timeout=1.0)  # the holder is dead: its lock is stale
    assert summary.computed == 6
    assert any("stale lock" in n for n in summary.notes)
    assert not lock.exists()


def test_a_torn_parts_stream_is_detected_and_its_samples_recomputed(demo_corpus, tmp_path):
    store = FeatureStore(tmp_path / "store")
    key = feature_set_key("demo", RmsExtractor(), Segmenter())
    samples = DaicWoz(demo_corpus).samples()
    # a run that wrote two chunks and was killed: journal intact, the stream cut short
    from features.runner import process_chunk

    torn = {s.sample_id for s in samples[3:5]}
    with store.part_writer(key, RmsExtractor().library_versions()) as writer:
        for chunk in (samples[:3], samples[3:5]):
            out = process_chunk(RmsExtractor(), Segmenter(), chunk)
            files = {s.sample_id: {"hash": store.hasher.combined({"audio": s.media["audio"]}), "files": {}}
                     for s in chunk}
            writer.write([out.frame], files, {}, [])
        stream = writer.stream_path
    size = stream.stat().st_size
    with open(stream, "r+b") as f:
        f.truncate(size - 200)
    journal = read_journal(store.parts_dir(key))
    assert set(journal.torn) == torn
    summary = run(demo_corpus, store)
    assert summary.skipped == 3 and set(summary.computed_ids) == torn | {samples[5].sample_id}
    assert any("no rows" in n for n in summary.notes)
    assert store.read(key).index.get_level_values("sample_id").nunique() == 6


def test_a_fully_cached_run_on_a_read_only_store_writes_nothing(demo_corpus, tmp_path):
    store_root = tmp_path / "store"
    run(demo_corpus, FeatureStore(store_root))
    before = {p: p.stat().st_mtime_ns for p in store_root.rglob("*")}
    modes = {p: p.stat().st_mode for p in [store_root, *store_root.rglob("*")]}
    try:
        for p in [store_root, *store_root.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        if os.access(store_root, os.W_OK):
            pytest.skip("running as a user who can write to read-only folders (root)")
        summary = run(demo_corpus, FeatureStore(store_root))
        assert (summary.computed, summary.skipped) == (0, 6)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert {p: p.stat().st_mtime_ns for p in store_root.rglob("*")} == before


def test_a_fully_cached_run_opens_nothing_for_writing(demo_corpus, tmp_path, monkeypatch):
    """The same guarantee checked where root can write anywhere: no file is opened for writing."""
    import builtins

    store_root = tmp_path / "store"
    run(demo_corpus, FeatureStore(store_root))
    real_open, real_os_open = builtins.open, os.open
    written = []

    def spy_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and str(store_root) in str(file):
            written.append(file)
        return real_open(file, mode, *a, **k)

    def spy_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(store_root) in str(path):
            written.append(path)
        return real_os_open(path, flags, *a, **k)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    summary = run(demo_corpus, FeatureStore(store_root))
    assert (summary.computed, summary.skipped) == (0, 6) and written == []


def test_store_files_get_the_users_umask(demo_corpus, tmp_path):
    old = os.umask(0o022)
    try:
        summary = run(demo_corpus, FeatureStore(tmp_path / "store"))
    finally:
        os.umask(old)
    for path in (Path(summary.path), Path(summary.errors_path)):
        assert path.stat().st_mode & 0o777 == 0o644, oct(path.stat().st_mode)


def test_workers_end_when_the_parent_is_killed(demo_corpus, tmp_path):
    import psutil

    script = _extract_script(demo_corpus, tmp_path / "store", 5.0, tmp_path / "x.json").replace(
        'progress=False)', 'progress=False, n_jobs=2, chunk_size=1)')
    proc = subprocess.Popen([sys.executable, "-c", script])
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in parent.children(recursive=True) if "LokyProcess" in " ".join(c.cmdline())]
        time.sleep(0.05)
    assert len(workers) >= 2, "the run did not start its workers"
    children = parent.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=20)
    for p in alive:
        p.kill()
    assert not alive, f"processes still running after their parent was killed: {[p.cmdline() for p in alive]}"
