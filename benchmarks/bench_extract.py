"""Extraction speed and memory on real data ($AFFECT_SHARED_DATA), ours against bare loops.

eGeMAPS functionals over the 960 RAVDESS clips: a bare loop of
`opensmile.Smile.process_file`, our extractor in one process, with 2 workers, and a second
run on the warm cache. Sentence embeddings over MELD's 9,989 training utterances: bare
`SentenceTransformer.encode` (same model, same batch size) against our extractor.

Each measurement runs in its own process (so its peak memory is its own); the wall time is
taken inside that process around the work (model loading included on both sides for text).

    .venv/bin/python benchmarks/bench_extract.py [--repeats 3] [--only egemaps|text]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_measured  # noqa: E402

BATCH = 64


def data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    value = os.environ.get("AFFECT_SHARED_DATA") or str(default)
    path = Path(value)
    if not (path / "ravdess_dev").is_dir():
        sys.exit(f"benchmark data not found under {path}; set AFFECT_SHARED_DATA")
    return path


def phase(name: str, store: str) -> dict:
    """Run one measured phase in this process and return its figures."""
    data = data_dir()
    if name == "egemaps_bare":
        import opensmile

        files = sorted(str(p) for p in (data / "ravdess_dev").rglob("*.wav"))
        t = time.perf_counter()
        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals)
        rows = [smile.process_file(f) for f in files]
        return {"seconds": time.perf_counter() - t, "items": len(rows)}
    if name.startswith("egemaps_ours"):
        from features.audio import OpenSmileExtractor
        from features.runner import run_extraction
        from features.store import FeatureStore
        from fusion.datasets.ravdess import Ravdess

        samples = Ravdess(data / "ravdess_dev").samples()
        n_jobs = 2 if name.endswith("2") else 1
        t = time.perf_counter()
        s = run_extraction(samples, OpenSmileExtractor(), FeatureStore(store), "ravdess",
                           n_jobs=n_jobs, progress=False)
        return {"seconds": time.perf_counter() - t, "items": s.computed + s.skipped,
                "computed": s.computed, "skipped": s.skipped, "failed": s.failed}
    texts_csv = data / "meld" / "train_sent_emo.csv"
    if name == "text_bare":
        import pandas as pd
        from sentence_transformers import SentenceTransformer

        from features.text import resolve_model

        texts = pd.read_csv(texts_csv, encoding="utf-8")["Utterance"].astype(str).tolist()
        t = time.perf_counter()
        model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
        emb = model.encode(texts, batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False)
        return {"seconds": time.perf_counter() - t, "items": len(emb)}
    if name == "text_ours":
        import sentence_transformers  # noqa: F401  (imported before the clock, as in text_bare)

        from features.runner import run_extraction
        from features.store import FeatureStore
        from features.text import SentenceEmbeddingExtractor
        from fusion.datasets.meld import Meld

        samples = Meld(data / "meld", splits=["train"]).samples()
        t = time.perf_counter()
        s = run_extraction(samples, SentenceEmbeddingExtractor(session="mean", batch_size=BATCH,
                                                               device="cpu"),
                           FeatureStore(store), "meld", n_jobs=1, progress=False)
        return {"seconds": time.perf_counter() - t, "items": s.computed, "failed": s.failed}
    raise SystemExit(f"unknown phase {name}")


def measure(name: str, store: str) -> dict:
    out = Path(store) / f".{name}.json"
    m = run_measured([sys.executable, __file__, "--phase", name, "--store", store, "--out", str(out)],
                     env={"HF_HUB_OFFLINE": "1"})
    if m.returncode != 0:
        sys.exit(f"phase {name} failed with exit code {m.returncode}")
    res = json.loads(out.read_text())
    res["peak_rss_mib"] = m.peak_rss_mib
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase")
    parser.add_argument("--store")
    parser.add_argument("--out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["egemaps", "text"])
    args = parser.parse_args()
    if args.phase:
        Path(args.out).write_text(json.dumps(phase(args.phase, args.store)))
        return

    data = data_dir()
    # Read every input once so that no measurement pays for a cold page cache.
    for p in (data / "ravdess_dev").rglob("*.wav"):
        p.read_bytes()
    rows = []
    if args.only in (None, "egemaps"):
        runs: dict[str, list[dict]] = {k: [] for k in ("bare", "ours1", "ours2", "warm")}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                runs["bare"].append(measure("egemaps_bare", a))
                runs["ours1"].append(measure("egemaps_ours1", a))
                runs["ours2"].append(measure("egemaps_ours2", b))
                runs["warm"].append(measure("egemaps_ours2", b))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        mem = {k: max(r["peak_rss_mib"] for r in v) for k, v in runs.items()}
        assert all(r["computed"] == 960 for r in runs["ours1"] + runs["ours2"])
        assert all(r["skipped"] == 960 and r["computed"] == 0 for r in runs["warm"])
        rows += [
            ("eGeMAPS, 960 RAVDESS clips", "bare `Smile.process_file` loop, 1 process", runs["bare"],
             med["bare"], mem["bare"], ""),
            ("", "ours, 1 process (cold)", runs["ours1"], med["ours1"], mem["ours1"],
             f"overhead {100 * (med['ours1'] / med['bare'] - 1):+.1f} % (target ≤ 10 %)"),
            ("", "ours, 2 workers (cold)", runs["ours2"], med["ours2"], mem["ours2"],
             f"{med['bare'] / med['ours2']:.2f}× the bare loop (target ≥ 1.7×)"),
            ("", "ours, 2 workers, warm cache", runs["warm"], med["warm"], mem["warm"],
             f"{100 * med['warm'] / med['ours2']:.1f} % of the cold run (target ≤ 3 %)"),
        ]
    if args.only in (None, "text"):
        runs = {k: [] for k in ("bare", "ours")}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as a:
                runs["bare"].append(measure("text_bare", a))
                runs["ours"].append(measure("text_ours", a))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        mem = {k: max(r["peak_rss_mib"] for r in v) for k, v in runs.items()}
        assert all(r["items"] == 9989 for r in runs["bare"] + runs["ours"])
        rows += [
            ("MiniLM embeddings, 9,989 MELD utterances", f"bare `SentenceTransformer.encode`, batch {BATCH}",
             runs["bare"], med["bare"], mem["bare"], ""),
            ("", f"ours, 1 process, batch {BATCH}", runs["ours"], med["ours"], mem["ours"],
             f"overhead {100 * (med['ours'] / med['bare'] - 1):+.1f} % (target ≤ 10 %)"),
        ]
    print(f"\nmachine: {machine()}; {args.repeats} repetition(s), median wall time")
    print("| task | run | wall time, each repetition (s) | median (s) | peak RSS (MiB) | result |")
    print("|---|---|---|---|---|---|")
    for task, run, reps, median, mib, note in rows:
        each = ", ".join(f"{r['seconds']:.1f}" for r in reps)
        print(f"| {task} | {run} | {each} | {median:.2f} | {mib:.0f} | {note} |")


if __name__ == "__main__":
    main()
