"""ATEI: training throughput and memory, Lightning against a bare PyTorch loop; ATEI against its
ablations on the 275-session demo corpus; the interviewer-prompt shortcut.

1. Throughput (always): 275 synthetic sessions of 40 aligned turns (88 acoustic features, like
   eGeMAPS functionals, and 384 textual ones, like MiniLM), 220 for training and 55 for
   validation, the network of configs/train/atei_full.yaml. Each run is its own process (peak RSS
   of the process tree); the timer covers the training epochs only (both sides: a training
   pass and a validation pass per epoch, the same network, data loader, AdamW settings and
   seed), after a one-epoch warm-up on each side (on the Lightning side the first fit of a
   process imports the trainer's modules, about 0.3 s that is not training). "lightning" is
   `fusion.lit.fit_module` with the shared `LitModule` (the path every model here trains
   through); "bare" is a hand-written loop. 3 repetitions each, alternating,
   median reported. `--ddp` adds a 2-process run of the Lightning path (CPU: gloo, `ddp_fork`;
   GPU: `ddp_spawn`, one device per process). `--device cuda` runs both on the GPU, with bf16
   mixed precision (autocast in the bare loop).
2. `--demo`: `fusion train --config configs/train/atei_full.yaml` on data/bench/demo275 (generated
   and extracted beforehand: eGeMAPS and MiniLM per participant turn, not timed); the table of
   ATEI against ATEI off, no scale, additive and gated fusion, late fusion and each stream alone.
   Then configs/train/interviewer_shortcut.yaml on the same corpus.

    .venv/bin/python benchmarks/bench_atei.py [--epochs 10] [--repeats 3] [--ddp] [--demo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/train/atei_full.yaml"
SHORTCUT = ROOT / "configs/train/interviewer_shortcut.yaml"
EXTRACT = ROOT / "configs/extract/demo_multimodal.yaml"
NET = {"hidden": 32, "layers": 1, "heads": 4, "atei_layers": 1, "dropout": 0.2}


def data(sessions: int, turns: int, device: str):
    """Loaders of synthetic aligned streams (train 80 %, validation 20 %)."""
    import torch

    from fusion.lit import TensorDictDataset, loaders
    from fusion.synthetic.inconsistency import inconsistency_sessions

    blocks, y = inconsistency_sessions(sessions, turns, seed=0, dims=(88, 384))

    def dataset(rows):
        x = {m: torch.as_tensor(np.nan_to_num(b.values[rows]), dtype=torch.float32) for m, b in blocks.items()}
        mask = {m: torch.as_tensor(b.mask[rows]) for m, b in blocks.items()}
        times = {m: torch.as_tensor(np.nan_to_num(b.starts[rows]), dtype=torch.float32) for m, b in blocks.items()}
        return TensorDictDataset({"x": x, "mask": mask, "times": times}, {"y": torch.as_tensor(y[rows])})

    cut = int(0.8 * sessions)
    return loaders(dataset(np.arange(cut)), dataset(np.arange(cut, sessions)), 32, 0), cut


def network():
    from fusion.models.nets.atei import ATEI

    return ATEI({"audio": 88, "text": 384}, ["audio", "text"], "audio", "text", {"y": 2}, **NET)


def worker(kind: str, sessions: int, turns: int, epochs: int, device: str, ddp: bool) -> dict:
    import torch

    torch.manual_seed(0)
    (train, val), n_train = data(sessions, turns, device)
    net = network()
    if kind in ("lightning", "default"):
        from fusion.lit import Head, LitModule, fit_module

        kw = {"strategy": "ddp_fork" if device == "cpu" else "ddp_spawn", "devices": 2} if ddp else {}
        # "lightning": the Trainer; "default": fit_module's default engine (on one CPU process,
        # the plain loop `FitLoop`; elsewhere the Trainer)
        kw["engine"] = "lightning" if kind == "lightning" else "auto"
        if not ddp:  # warm-up: the first fit of a process imports Lightning's trainer modules (~0.3 s)
            fit_module(LitModule(network(), [Head("y", "multiclass", 2)]), train, val, seed=0, max_epochs=1,
                       device=device, engine=kw["engine"])
        torch.manual_seed(0)
        net = network()
        module = LitModule(net, [Head("y", "multiclass", 2)], lr=2e-3, weight_decay=0.01)
        t0 = time.perf_counter()
        result = fit_module(module, train, val, seed=0, max_epochs=epochs, patience=10 * epochs,
                            device=device, **kw)
        seconds = time.perf_counter() - t0
        where = f"{result.accelerator} {result.precision} ×{result.world_size}"
    else:
        dev = torch.device("cuda" if device == "cuda" else "cpu")
        net = net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.01)
        amp = dev.type == "cuda"

        def move(batch):
            inputs, targets = batch
            return ({k: {m: t.to(dev) for m, t in v.items()} for k, v in inputs.items()},
                    {k: t.to(dev) for k, t in targets.items()})

        for batch in train:  # warm-up, as on the Lightning side: one pass of the allocator and kernels
            inputs, targets = move(batch)
            torch.nn.functional.cross_entropy(net(**inputs)["y"].float(), targets["y"]).backward()
        net.zero_grad()
        t0 = time.perf_counter()
        for _ in range(epochs):
            net.train()
            for batch in train:
                inputs, targets = move(batch)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    out = net(**inputs)["y"]
                loss = torch.nn.functional.cross_entropy(out.float(), targets["y"])
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                for batch in val:
                    inputs, targets = move(batch)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                        torch.nn.functional.cross_entropy(net(**inputs)["y"].float(), targets["y"])
        if amp:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        where = f"{dev.type} {'bf16 autocast' if amp else '32-true'} ×1"
    return {"kind": kind, "seconds": seconds, "sessions_per_s": n_train * epochs / seconds, "where": where}


def throughput(args) -> None:
    kinds = ["bare", "lightning", "default"] + (["lightning-ddp"] if args.ddp else [])
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in kinds:
                out = Path(tmp) / f"{kind}-{r}.json"
                cmd = [sys.executable, __file__, "--worker", kind, "--out", str(out), "--epochs", str(args.epochs),
                       "--sessions", str(args.sessions), "--turns", str(args.turns), "--device", args.device]
                m = run_measured(cmd)
                if m.returncode:
                    raise SystemExit(f"{kind} run failed (exit {m.returncode})")
                runs[kind].append({**json.loads(out.read_text()), "peak_rss_mib": m.peak_rss_mib})
    print(f"\nATEI training, {args.sessions} sessions × {args.turns} turns ({int(0.8 * args.sessions)} train), "
          f"{args.epochs} epochs, batch 32, device {args.device}; {machine()}")
    print("| path | where | seconds per run | median (s) | sessions/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    med = {}
    for kind, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        med[kind] = statistics.median(secs)
        print(f"| {kind} | {rs[0]['where']} | {', '.join(f'{s:.2f}' for s in secs)} | {med[kind]:.2f} | "
              f"{statistics.median(r['sessions_per_s'] for r in rs):.1f} | "
              f"{max(r['peak_rss_mib'] for r in rs):.0f} |")
    print(f"overhead: Lightning Trainer {100 * (med['lightning'] / med['bare'] - 1):+.1f} %, fit_module's default "
          f"engine {100 * (med['default'] / med['bare'] - 1):+.1f} % (target ≤ 10 %)")


def fusion(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fusion.cli", *args], check=True, cwd=ROOT,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def fmt(m: dict) -> str:
    """mean ± sd over seeds, with the 95 % CI where the evaluation computed one."""
    ci = f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if "ci_low" in m else ""
    return f"{m['mean']:.3f} ± {m['sd']:.3f}{ci}"


def demo(args) -> None:
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    base = ROOT / "data" / "bench"
    root, store = base / "demo275", base / "store"
    generate_demo_corpus(root, n_sessions=275, seed=0, questions=10, n_jobs=2)
    fusion("extract", "--config", str(EXTRACT), "--set", f"dataset.root={root}", "--set", f"store={store}",
           "--set", "progress=false", "--only", "egemaps_turn", "--only", "text_turn",
           "--only", "text_interviewer_turn")
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
                  "--set", f"tracking.uri=sqlite:///{tmp}/ml.db", "--set", f"tracking.artifacts={tmp}/art",
                  "--set", f"output_dir={tmp}/out", "--set", "evaluation.save_model=false"]
        t0 = time.perf_counter()
        fusion("train", "--config", str(CONFIG), *common, "--json", f"{tmp}/atei.json")
        seconds = time.perf_counter() - t0
        s = json.loads(Path(f"{tmp}/atei.json").read_text())
        fitted = json.loads((Path(s["outputs"]["dir"]) / "fitted_per_fold.json").read_text())["depression"]
        fusion("train", "--config", str(SHORTCUT), *common, "--json", f"{tmp}/shortcut.json")
        sc = json.loads(Path(f"{tmp}/shortcut.json").read_text())
    report(s, fitted, sc, seconds)


def report(s: dict, fitted: list[dict], sc: dict, seconds: float) -> None:
    """The tables of the ATEI run (`fusion train --json` summary and its fitted_per_fold
    entries) and of the shortcut run."""
    t = s["targets"]["depression"]
    mets = t["metrics"]
    print(f"\nATEI on the 275-session demo corpus ({seconds:.0f} s); {machine()}")
    print("| variant | weighted F1 | top-label ECE | QWK | AUC (one-vs-rest) | ATEI − variant, weighted F1 (paired) |")
    print("|---|---|---|---|---|---|")
    names = {"model": "ATEI (concat, learned scalar scale)", "atei-off:audio+text": "ATEI off",
             "atei-no-scale:audio+text": "ATEI without the scale", "atei-add:audio+text": "ATEI, additive fusion",
             "atei-gated:audio+text": "ATEI, gated fusion", "late-fusion:audio+text": "late fusion (pooled turns)",
             "atei:audio": "acoustic stream alone", "atei:text": "textual stream alone"}
    for key, label in names.items():
        m = mets[key]
        gain = fmt(m["f1_weighted_gain_of_model"]) if "f1_weighted_gain_of_model" in m else ""
        print(f"| {label} | {fmt(m['f1_weighted'])} | {fmt(m['ece'])} | {fmt(m['qwk'])} | {fmt(m['auc_ovr'])} | "
              f"{gain} |")
    if "regression" in mets:
        print(f"PHQ-8 score (joint head): MAE {fmt(mets['regression']['mae'])}")
    scale = [f["atei_scale"] for f in fitted if f.get("atei_scale") is not None]
    if scale:
        print(f"learned ATEI scale over folds: mean {statistics.mean(scale):.3f}, "
              f"range {min(scale):.3f}–{max(scale):.3f}")
    m = sc["targets"]["depression"]["metrics"]
    print("\nInterviewer-prompt shortcut (PHQ-8 ≥ 10, MiniLM turn means, calibrated late fusion of "
          "logistic regressions)")
    print("| text read | weighted F1 | macro F1 | AUC |")
    print("|---|---|---|---|")
    for key, label in (("late:participant", "participant's turns (default)"),
                       ("late:interviewer", "interviewer's turns"), ("late:participant+interviewer", "both")):
        print(f"| {label} | {fmt(m[key]['f1_weighted'])} | {fmt(m[key]['f1_macro'])} | {fmt(m[key]['auc_ovr'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=275)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--ddp", action="store_true", help="also a 2-process DDP run of the Lightning path")
    parser.add_argument("--demo", action="store_true", help="also the demo-corpus comparison and the shortcut")
    parser.add_argument("--worker", choices=["bare", "lightning", "default", "lightning-ddp"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = "lightning" if args.worker == "lightning-ddp" else args.worker
        res = worker(kind, args.sessions, args.turns, args.epochs, args.device, args.worker == "lightning-ddp")
        if args.out and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            Path(args.out).write_text(json.dumps({**res, "kind": args.worker}))
        return
    throughput(args)
    if args.demo:
        demo(args)


if __name__ == "__main__":
    main()
