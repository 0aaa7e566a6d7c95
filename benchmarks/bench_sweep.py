"""Sweeps with and without pruning: trials per minute, and the wall time to the best objective.

The demo severity task (PHQ-8 severity, 5 classes) on the cached 275-session synthetic corpus
(`make bench-train` extracts it): early fusion of log-Mel, MiniLM and face session features
with the MLP learner, trained on the corpus's train sessions; a TPE sweep (seed 0) over the
MLP's width, learning rate, dropout and weight decay, scored by weighted F1 on 3 grouped folds
of the training sessions, once with median pruning and once without, same trial budget. The
best configuration of each is evaluated once on the dev sessions.

    .venv/bin/python benchmarks/bench_sweep.py [--trials 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "data" / "bench"
SPACE = {
    "model.params.learner.params.hidden": {"type": "int", "low": 16, "high": 256, "log": True},
    "model.params.learner.params.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "model.params.learner.params.dropout": {"type": "float", "low": 0.0, "high": 0.6},
    "model.params.learner.params.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed (both runs)")
    ap.add_argument("--sessions", type=int, default=275)
    ap.add_argument("--pruners", default="median,none", help="the sweeps run, in order (median, percentile, none)")
    args = ap.parse_args()
    import optuna

    root, store = BENCH / f"demo{args.sessions}", BENCH / "store"
    if not root.is_dir():
        sys.exit(f"{root} not found: run `make bench-train` first (it generates and extracts the corpus)")
    print(machine())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = {
            "extract": str(ROOT / "configs/extract/demo_multimodal.yaml"),
            "modalities": {"text": [{"features": "text_session", "columns": ["mean_*"]}],
                           "audio": [{"features": "logmel_session"}], "face": [{"features": "face_session"}]},
            "targets": {"depression": {"label": "PHQ8_Severity", "n_classes": 5}},
            "model": {"name": "early-fusion", "params": {"learner": {"name": "mlp", "params": {
                "max_epochs": 100, "patience": 10, "device": "cpu"}}, "calibration": "none"}},
            "cv": {"scheme": "official", "train_splits": ["train"], "test_splits": ["dev"], "inner_splits": 2},
            "evaluation": {"n_bootstrap": 200}, "tracking": {"enabled": False}, "output_dir": str(tmp / "out")}
        (tmp / "train.yaml").write_text(yaml.safe_dump(train))
        for pruner in args.pruners.split(","):
            sweep = {"train": "train.yaml", "overrides": [f"extract.dataset.root={root}", f"extract.store={store}"],
                     "space": SPACE, "objective": "f1_weighted", "folds": 3, "n_trials": args.trials,
                     "pruner": pruner, "seed": args.seed, "study": f"mlp-{pruner}", "output_dir": str(tmp / "sweeps")}
            path = tmp / f"sweep_{pruner}.yaml"
            path.write_text(yaml.safe_dump(sweep))
            out = tmp / f"{pruner}.json"
            subprocess.run([sys.executable, "-m", "fusion.cli", "sweep", "--config", str(path), "--json", str(out)],
                           check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            s = json.loads(out.read_text())
            study = optuna.load_study(study_name=s["study"], storage=s["storage"])
            trials = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.datetime_complete)
            start = min(t.datetime_start for t in trials)
            minutes = (max(t.datetime_complete for t in trials) - start).total_seconds() / 60
            ev = s["evaluation"]["targets"]["depression"]["metrics"]["model"]["f1_weighted"]
            results[pruner] = {
                "trials_per_minute": round(len(trials) / minutes, 2), "minutes": round(minutes, 2),
                "states": s["states"], "best": s["best"]["value"],
                "reached": [((t.datetime_complete - start).total_seconds(), t.value) for t in trials
                            if t.state.name == "COMPLETE"],
                "dev_f1_weighted": [round(ev["mean"], 3), round(ev["ci_low"], 3), round(ev["ci_high"], 3)]}
    target = min(r["best"] for r in results.values())  # the best value both runs reached
    for pruner, r in results.items():
        r["seconds_to_target"] = round(next(t for t, v in r.pop("reached") if v >= target - 1e-12), 1)
        print(f"pruner {pruner}: {r['trials_per_minute']} trials/min ({r['minutes']} min, {r['states']}), best "
              f"training-fold weighted F1 {r['best']:.4f}, {r['seconds_to_target']} s to reach {target:.4f}; "
              f"best configuration on dev: {r['dev_f1_weighted']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
