"""Window fusion (compound expressions): windows per second for training and for inference.

A synthetic corpus in the C-EXPR-DB layout (`fusion.synthetic.cexpr_corpus`, 60 videos) with
face (OpenFace 2.x statistics) and eGeMAPS features on the same 1-second windows of every
annotated segment (configs/extract/cexpr.yaml; generated and extracted once under
data/bench/cexpr60, not timed). The window-fusion network of configs/train/compound.yaml, for
each fusion (late, early, cross), after one untimed warm-up epoch: one `fit` on 80 % of the
videos for a fixed number of epochs (patience = epochs, so no early stop), each epoch a
training and a validation pass on the other 20 %, then the out-of-fold and calibration
predictions (what `fit` always does); then inference of every segment's and every window's
probabilities. A "window" is one present window of one segment (its face and voice
features); training windows/s counts the training windows of every epoch over the whole
`fit` time.

    .venv/bin/python benchmarks/bench_compound.py [--videos 60] [--epochs 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "configs/train/compound.yaml"
EXTRACT = ROOT / "configs/extract/cexpr.yaml"


def prepare(videos: int) -> tuple[Path, Path]:
    from fusion.synthetic.cexpr_corpus import generate_cexpr_corpus

    base = ROOT / "data" / "bench"
    root, store = base / f"cexpr{videos}", base / "store"
    if not (root / "annotation").exists():
        generate_cexpr_corpus(root, n_videos=videos, seed=0)
    subprocess.run([sys.executable, "-m", "fusion.cli", "extract", "--config", str(EXTRACT), "--set",
                    f"dataset.root={root}", "--set", f"store={store}", "--set", "progress=false"],
                   check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return root, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    root, store = prepare(args.videos)

    from fusion.config.load import load_config
    from fusion.config.schema import TrainConfig
    from fusion.data.blocks import load_model_data, select_target
    from fusion.evaluation.splits import grouped_kfold
    from fusion.models.targets import Targets
    from fusion.models.window_fusion import WindowFusionModel

    cfg = load_config(TrainConfig, TRAIN, [f"extract.dataset.root={root}", f"extract.store={store}"])
    data = load_model_data(cfg, sequence_ok=True)
    spec = cfg.targets["expression"]
    target = select_target("expression", spec, data.labels, data.blocks, data.dataset, cfg.cv.group_by)
    blocks, y = target.blocks, target.y
    present = np.logical_or.reduce([b.mask for b in blocks.values()])
    tr, _ = grouped_kfold(y, target.groups, 5, 0)[0]  # 80 % of the videos train, 20 % validate
    print(f"\nwindow-fusion, {len(y)} segments of {len(set(target.groups))} videos, {int(present.sum())} "
          f"windows ({int(present[tr].sum())} in training), {args.epochs} epochs, batch 32, device "
          f"{args.device}; {machine()}")
    print("| fusion | training (s) | training windows/s | inference (s) | inference windows/s |")
    print("|---|---|---|---|---|")
    # one untimed epoch first: the first fit of a process pays for Lightning's and torch's set-up
    WindowFusionModel(**{**cfg.model.params, "max_epochs": 1, "refit": False, "max_inner": 1}).fit(
        blocks, Targets.classes(y, spec.n_classes), inner=[grouped_kfold(y, target.groups, 5, 0)[0]])
    for fusion in ("late", "early", "cross"):
        params = {**cfg.model.params, "fusion": fusion, "device": args.device, "max_epochs": args.epochs,
                  "patience": args.epochs, "refit": False, "max_inner": 1}
        t0 = time.perf_counter()
        model = WindowFusionModel(**params).fit(blocks, Targets.classes(y, spec.n_classes),
                                                inner=[grouped_kfold(y, target.groups, 5, 0)[0]])
        t_train = time.perf_counter() - t0
        epochs = model.best_epochs_  # the fit ran every epoch (patience = epochs); best one kept
        t0 = time.perf_counter()
        model.predict_proba(blocks)
        model.window_proba(blocks)
        t_inf = time.perf_counter() - t0
        print(f"| {fusion} | {t_train:.2f} | {int(present[tr].sum()) * args.epochs / t_train:.0f} | {t_inf:.3f} | "
              f"{int(present.sum()) / t_inf:.0f} |  (best epoch {epochs})")


if __name__ == "__main__":
    main()
