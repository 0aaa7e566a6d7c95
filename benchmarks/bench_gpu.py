"""Every GPU path of the neural models, on RAVDESS features, in one short run.

Runs `fusion train` (tracking off) with the device left on "auto" (a GPU when present) and
precision "auto" (bf16 mixed precision on a GPU) for:

1. the frame-sequence network on log-Mel frames (configs/train/ravdess_frames.yaml, actors
   1–12 → 13–16);
2. the turn-attention network on the same frames (a Transformer over frames);
3. calibrated late fusion with the MLP learner, and neural late fusion (`late-fusion-nn`),
   on eGeMAPS and log-Mel statistics (same split).

Prints one JSON line per run (seconds, device, precision, UAR, weighted F1, epochs) and writes
them to `--out`. With `--emotic`, then runs `bench_emotic.py --device cuda --finetune` (image
embeddings, the context head in bf16 against a bare loop, one end-to-end fine-tuning epoch; a
synthetic corpus it writes itself, so nothing needs to travel). Needs the RAVDESS features in the store (`make extract
CONFIG=configs/extract/ravdess.yaml`); `--root` / `--store` point at them. The labels come from
the RAVDESS file names alone, so a folder of empty files named as the corpus is enough where
the audio cannot travel.

    python benchmarks/bench_gpu.py --root data/ravdess --store features_store [--epochs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOLDOUT = ["cv.scheme=holdout", "cv.test_groups=[actor13,actor14,actor15,actor16]"]
POOLED = ["modalities={egemaps: [{features: egemaps, normalise: speaker}], "
          "logmel: [{features: logmel, normalise: speaker}]}"]
EPOCHS = "model.params.max_epochs"
RUNS = {
    "frame-sequence": ("configs/train/ravdess_frames.yaml", []),
    "turn-attention (frames)": ("configs/train/ravdess_frames.yaml", [
        "model.name=turn-attention",
        "model.params={hidden: 96, layers: 2, heads: 4, time_scale: 1.0, dropout: 0.2, lr: 0.001, "
        "weight_decay: 0.01, batch_size: 32, max_epochs: 100, patience: 15, schedule: cosine, "
        "warmup_epochs: 2, max_inner: 2}"]),
    "late-fusion, mlp learner": ("configs/train/ravdess_logreg.yaml", [*HOLDOUT, *POOLED,
        "model.params={learner: {name: mlp, params: {hidden: 128, dropout: 0.3, lr: 0.001, max_epochs: 200, "
        "patience: 20}}, calibration: temperature, fusion: mean}", "cv.inner_splits=3"],
        "model.params.learner.params.max_epochs"),
    "late-fusion-nn": ("configs/train/ravdess_logreg.yaml", [*HOLDOUT, *POOLED,
        "model.name=late-fusion-nn", "model.params={hidden: 64, dropout: 0.3, max_epochs: 200, patience: 20}",
        "cv.inner_splits=3"]),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="data/ravdess")
    ap.add_argument("--store", default="features_store")
    ap.add_argument("--out", default="bench_gpu.json")
    ap.add_argument("--epochs", type=int, default=None, help="cap max_epochs of every run")
    ap.add_argument("--only", action="append", help="run only these (repeatable)")
    ap.add_argument("--emotic", action="store_true", help="also run bench_emotic.py on the GPU (--finetune)")
    ap.add_argument("--emotic-images", type=int, default=400, dest="emotic_images")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from fusion.cli import main as fusion

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    print(json.dumps(info), flush=True)
    results = {"machine": info, "runs": {}}
    outputs = tempfile.mkdtemp(prefix="bench_gpu_")
    for name, (config, sets, *cap) in RUNS.items():
        if args.only and name not in args.only:
            continue
        summary = Path(args.out).with_suffix(f".{len(results['runs'])}.json")
        overrides = [f"extract.dataset.root={args.root}", f"extract.store={args.store}", "tracking.enabled=false",
                     f"output_dir={outputs}", "evaluation.n_bootstrap=200",
                     "evaluation.save_model=false", *sets]
        if args.epochs:
            overrides.append(f"{cap[0] if cap else EPOCHS}={args.epochs}")
        argv = ["train", "--config", str(ROOT / config), "--json", str(summary)]
        for o in overrides:
            argv += ["--set", o]
        t0 = time.perf_counter()
        code = fusion(argv)
        seconds = time.perf_counter() - t0
        row = {"seconds": round(seconds, 1), "exit": code}
        if code == 0:
            s = json.loads(summary.read_text())
            t = s["targets"]["emotion"]
            m = t["metrics"]["model"]
            fitted = json.loads((Path(s["outputs"]["dir"]) / "fitted_per_fold.json").read_text())["emotion"]
            row.update(uar=round(m["uar"]["mean"], 3), uar_ci=[round(m["uar"]["ci_low"], 3),
                                                              round(m["uar"]["ci_high"], 3)],
                       f1_weighted=round(m["f1_weighted"]["mean"], 3), n_test=t["n_samples"],
                       best_epochs=[f.get("best_epochs") for f in fitted],
                       trained_on=sorted({str(f.get("trained_on")) for f in fitted}))
        results["runs"][name] = row
        print(json.dumps({name: row}), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.emotic:
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_emotic.py"), "--device", "cuda",
                        "--finetune", "--images", str(args.emotic_images)], check=False)


if __name__ == "__main__":
    main()
