"""Sweeps with and without pruning: trials per minute, and the wall time to the best objective.

The demo severity task (PHQ-8 severity, 5 classes) on the cached 275-session synthetic corpus
(`make bench-train` extracts it): early fusion of log-Mel, MiniLM and face session features
with the MLP learner, trained on the corpus's train sessions; a TPE sweep (seed 0) over the
MLP's width, learning rate, dropout and weight decay, scored by weighted F1 on 3 grouped folds
of the training sessions, once with median pruning (the defaults) and once without, same trial budget. The
best configuration of each is evaluated once on the dev sessions. With `--sampler random` both
runs draw the same configurations in the same order, so that they differ only by what the
pruner stops; `--objective brier --direction minimize` scores trials by the Brier score.

    .venv/bin/python benchmarks/bench_sweep.py [--trials 16] [--seed 0] [--sampler tpe|random]
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
    ap.add_argument("--sampler", default="tpe", choices=("tpe", "random"),
                    help="random: both runs draw the same configurations in the same order, so they differ "
                         "only by what the pruner stops")
    ap.add_argument("--objective", default="f1_weighted", help="a nominal metric of the sweep (e.g. brier)")
    ap.add_argument("--direction", default="maximize", choices=("maximize", "minimize"))
    ap.add_argument("--sweep-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a sweep-config key for the pruned runs (YAML value), e.g. prune_epoch_folds=0")
    ap.add_argument("--keep", type=Path, help="write the configs and studies here (kept) instead of a temporary folder")
    args = ap.parse_args()
    bad = [item for item in args.sweep_set if "=" not in item]
    if bad:
        ap.error(f"--sweep-set takes KEY=VALUE, got {bad}")
    import optuna

    root, store = BENCH / f"demo{args.sessions}", BENCH / "store"
    if not root.is_dir():
        sys.exit(f"{root} not found: run `make bench-train` first (it generates and extracts the corpus)")
    print(machine())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.keep:
            tmp = args.keep
            tmp.mkdir(parents=True, exist_ok=True)
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
                     "space": SPACE, "objective": args.objective, "direction": args.direction, "folds": 3,
                     "n_trials": args.trials, "sampler": args.sampler, "pruner": pruner, "seed": args.seed,
                     "study": f"mlp-{pruner}", "output_dir": str(tmp / "sweeps")}
            if pruner != "none":
                sweep.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.sweep_set)})
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
    sign = 1.0 if args.direction == "maximize" else -1.0
    target = sign * min(sign * r["best"] for r in results.values())  # the best value both runs reached
    for pruner, r in results.items():
        reached = r.pop("reached")
        r["seconds_to_target"] = round(next(t for t, v in reached if sign * (v - target) >= -1e-12), 1)
        # the time to the best value the run without a pruner reached (None: never reached)
        if "none" in results:
            goal = results["none"]["best"]
            r["seconds_to_unpruned_best"] = next((round(t, 1) for t, v in reached
                                                  if sign * (v - goal) >= -1e-12), None)
        print(f"pruner {pruner}: {r['trials_per_minute']} trials/min ({r['minutes']} min, {r['states']}), best "
              f"training-fold {args.objective} {r['best']:.4f}, {r['seconds_to_target']} s to reach {target:.4f}; "
              f"best configuration on dev: weighted F1 {r['dev_f1_weighted']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
