"""Severity late fusion on synthetic DAIC-layout corpora: time, fusion gain, calibration, and the
tri-modal paper's protocol side by side.

1. A 275-session corpus (the E-DAIC size): `fusion train` with
   configs/train/severity_late_fusion.yaml (full ablation, robustness, decision curves,
   attributions, MLflow) timed with its peak memory; late fusion of all three modalities
   against the best single modality (weighted F1, mean ± sd over 3 seeds, 95 % CI, paired gain);
   the conformal prediction sets of that run (coverage and set size per level and score, per
   gender, score intervals; `evaluation.conformal`).
2. The same corpus under `--protocol trimodal-paper`.
3. A 1,000-session corpus: calibrated against uncalibrated fusion, top-label ECE.
4. The neural models on the 275-session corpus: neural late fusion (`late-fusion-nn`) as a
   baseline in the late-fusion ablation (paired with it on the same folds), and turn-level
   attention fusion (`turn-attention`) on per-turn sequences (configs/train/turn_attention_full.yaml).

Corpora and features are cached under data/bench/ (generated and extracted once, not timed).

    .venv/bin/python benchmarks/bench_train.py [--sessions 275] [--ece-sessions 1000] [--skip-ece]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/train/severity_late_fusion.yaml"
EXTRACT = ROOT / "configs/extract/demo_multimodal.yaml"
TURNS = ROOT / "configs/train/turn_attention_full.yaml"
FEATURES = ["logmel_session", "text_session", "face_session", "text_transcript"]
TURN_FEATURES = ["logmel_turn", "text_turn", "face_turn"]
# Neural late fusion on a few hundred sessions needs strong regularisation.
LATE_NN = "{late-nn: {name: late-fusion-nn, params: {hidden: 16, dropout: 0.5, weight_decay: 0.01}}}"


def fusion(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fusion.cli", *args], check=True, cwd=ROOT,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def prepare(n: int, features: list[str] = FEATURES) -> tuple[Path, Path]:
    """A cached corpus of `n` sessions with the severity features extracted."""
    base = ROOT / "data" / "bench"
    root, store = base / f"demo{n}", base / "store"
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    generate_demo_corpus(root, n_sessions=n, seed=0, questions=10, n_jobs=2)
    only = [a for f in features for a in ("--only", f)]
    fusion("extract", "--config", str(EXTRACT), "--set", f"dataset.root={root}", "--set", f"store={store}",
           "--set", "progress=false", *only)
    return root, store


def train(root: Path, store: Path, tmp: Path, name: str, *extra: str, config: Path = CONFIG) -> tuple[dict, object]:
    out = tmp / f"{name}.json"
    cmd = [sys.executable, "-m", "fusion.cli", "train", "--config", str(config),
           "--set", f"extract.dataset.root={root}", "--set", f"extract.store={store}",
           "--set", f"tracking.uri=sqlite:///{tmp / 'mlruns.db'}", "--set", f"tracking.artifacts={tmp / 'art'}",
           "--set", f"output_dir={tmp / 'out'}", "--json", str(out), *extra]
    m = run_measured(cmd, env={"HF_HUB_OFFLINE": "1"})
    if m.returncode != 0:
        sys.exit(f"fusion train ({name}) failed with exit code {m.returncode}")
    return json.loads(out.read_text()), m


def ci(s: dict) -> str:
    text = f"{s['mean']:.3f} ± {s['sd']:.3f}" if s.get("sd") == s.get("sd") else f"{s['mean']:.3f}"
    return text + (f" [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" if "ci_low" in s else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=275)
    parser.add_argument("--ece-sessions", type=int, default=1000)
    parser.add_argument("--skip-ece", action="store_true")
    parser.add_argument("--skip-neural", action="store_true")
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    root, store = prepare(args.sessions, FEATURES + ([] if args.skip_neural else TURN_FEATURES))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ours, m = train(root, store, tmp, "ours")
        paper = None
        if not args.skip_paper:
            paper, _ = train(root, store, tmp, "paper", "--protocol", "trimodal-paper")
        ece = None
        if not args.skip_ece:
            root_e, store_e = prepare(args.ece_sessions)
            ece, _ = train(root_e, store_e, tmp, "ece", "--set", "evaluation.ablation=false",
                           "--set", "evaluation.robustness=false", "--set", "evaluation.attributions=false",
                           "--set", "evaluation.save_model=false", "--set", "evaluation.plots=false")
        neural = turns = None
        if not args.skip_neural:
            quick = ["--set", "evaluation.robustness=false", "--set", "evaluation.attributions=false",
                     "--set", "evaluation.save_model=false", "--set", "evaluation.plots=false"]
            neural, m_nn = train(root, store, tmp, "neural", "--set", f"evaluation.baselines={LATE_NN}", *quick)
            turns, m_turns = train(root, store, tmp, "turns", *quick, "--set", "evaluation.ablation=false",
                                   config=TURNS)

    print(f"\n### Full ablation on {args.sessions} sessions (`fusion train --config {CONFIG.relative_to(ROOT)}`)")
    print("| wall time (s) | peak RSS (MiB) | target < 10 min |")
    print("|---|---|---|")
    print(f"| {m.seconds:.1f} | {m.peak_rss_mib:.0f} | {'met' if m.seconds < 600 else 'NOT met'} |")

    print("\n### Late fusion against the best single modality (weighted F1, 3 seeds)")
    print("| target | late fusion, all three | best single modality | single | model − single (paired) |")
    print("|---|---|---|---|---|")
    for tname, t in ours["targets"].items():
        mets = t["metrics"]
        singles = {k: mets[k] for k, (f, mods) in t["ablation"].items() if f == "late" and "+" not in mods}
        best = max(singles, key=lambda k: singles[k]["f1_weighted"]["mean"])
        print(f"| {tname} | {ci(mets['model']['f1_weighted'])} | {best.split(':')[1]} | "
              f"{ci(singles[best]['f1_weighted'])} | {ci(singles[best]['f1_weighted_gain_of_model'])} |")

    print("\n### Calibration: top-label ECE of the fused prediction")
    print("| corpus | target | uncalibrated fusion | calibrated fusion (ours) |")
    print("|---|---|---|---|")
    for label, res in ((f"{args.sessions} sessions", ours), (f"{args.ece_sessions} sessions", ece)):
        if res is None:
            continue
        for tname, t in res["targets"].items():
            mets = t["metrics"]
            print(f"| {label} | {tname} | {ci(mets['uncalibrated']['ece'])} | {ci(mets['model']['ece'])} |")

    print(f"\n### Conformal prediction sets ({args.sessions} sessions, the same run: out-of-fold, 5 folds × 3 seeds)")
    print("| target | α | score | coverage, mean ± sd [95% CI] | mean set size (of K) | single class | "
          "adjacent classes | coverage per group [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for tname, t in ours["targets"].items():
        c = t.get("conformal") or {}
        for alpha, by_score in c.get("sets", {}).items():
            for score, e in by_score.items():
                groups = "; ".join(f"{g} {ci(ge['coverage'])} (n {ge['n']})"
                                   for g, ge in e.get("per_group", {}).items())
                print(f"| {tname} | {alpha} | {score} | {ci(e['coverage'])} | {e['size']['mean']:.2f} (of "
                      f"{c['n_classes']}) | {e['singleton']['mean']:.3f} | {e['contiguous']['mean']:.3f} | {groups} |")
        for alpha, e in c.get("intervals", {}).items():
            print(f"| {tname} | {alpha} | score interval | {ci(e['coverage'])} | "
                  f"width {e['width']['mean']:.2f} | | | |")
        for note in c.get("notes", []):
            print(f"note: {tname}: {note}")

    from fusion.synthetic.leakage import leakage_probe

    print("\n### Leakage guard: random labels per person, 15 turns per person with a personal offset")
    print("| split | accuracy, mean ± sd [95% CI] | majority-class rate |")
    print("|---|---|---|")
    for scheme in ("grouped-kfold", "turn-level"):
        acc, majority = leakage_probe(scheme)
        print(f"| {scheme} | {ci(acc)} | {majority:.3f} |")

    if neural is not None:
        print(f"\n### Neural models ({args.sessions} sessions, weighted F1 and top-label ECE, 3 seeds)")
        print(f"late fusion with the late-nn baseline: {m_nn.seconds:.1f} s; turn attention: {m_turns.seconds:.1f} s")
        print("| target | model | weighted F1 | ECE | late fusion − model (paired) |")
        print("|---|---|---|---|---|")
        for tname, t in neural["targets"].items():
            mets = t["metrics"]
            full = next(k for k, (f, _) in t["ablation"].items() if f == "late-nn")
            print(f"| {tname} | late-fusion (ours, ordinal learners) | {ci(mets['model']['f1_weighted'])} | "
                  f"{ci(mets['model']['ece'])} | |")
            print(f"| {tname} | late-fusion-nn | {ci(mets[full]['f1_weighted'])} | {ci(mets[full]['ece'])} | "
                  f"{ci(mets[full]['f1_weighted_gain_of_model'])} |")
            tm = turns["targets"][tname]["metrics"]["model"]
            print(f"| {tname} | turn-attention (per-turn sequences) | {ci(tm['f1_weighted'])} | {ci(tm['ece'])} | "
                  "not paired (another run) |")

    if paper is None:
        return
    print(f"\n### Protocols side by side ({args.sessions} sessions)")
    print("| target | protocol | accuracy | weighted F1 |")
    print("|---|---|---|---|")
    for tname, t in paper["targets"].items():
        for name, mm in t["metrics"].items():
            print(f"| {tname} | {name} | {ci(mm['accuracy'])} | {ci(mm['f1_weighted'])} |")
        mm = ours["targets"][tname]["metrics"]["model"]
        print(f"| {tname} | ours: calibrated late fusion, subject-grouped 5-fold × 3 seeds | "
              f"{ci(mm['accuracy'])} | {ci(mm['f1_weighted'])} |")


if __name__ == "__main__":
    main()
