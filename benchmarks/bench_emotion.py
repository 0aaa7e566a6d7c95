"""Emotion recognition on real data, and the recognisers as extractors over the demo turns.

1. RAVDESS speech (actors 1–16 of $AFFECT_SHARED_DATA/ravdess_dev), 8 emotions:
   configs/train/ravdess_emotion.yaml — nested selection (the `select` model inside each outer
   fold of 4 actors chooses on 3 inner folds among calibrated late fusions of logistic
   regressions or RBF SVMs per feature set, with or without the augmented training copies) —
   reported on its outer folds; then trained on actors 1–12 and tested on 13–16. The
   leave-4-actors-out run saves the recogniser. `--ravdess-loso` adds the earlier single
   configuration (logistic regressions, clean audio) under leave one actor out.
2. MELD text ($AFFECT_SHARED_DATA/meld: train and dev; the official test split is not
   there), 7 emotions, trained on train, scored on dev: configs/train/meld_emotion.yaml
   (MiniLM + logistic regression; saves the recogniser), the same with the mean context of 3
   previous utterances, configs/train/meld_dialogue.yaml (the dialogue model over frozen
   MiniLM), configs/train/meld_context_finetune.yaml (MiniLM fine-tuned on the utterance with
   its 3 previous ones, on the CPU unless a GPU is there) and configs/train/meld_ensemble.yaml
   (those three and MiniLM fine-tuned on the utterance alone, stacked on their predictions of
   an inner fold; no saved model); `--skip-finetune`
   leaves the last two out.
3. Both recognisers over the participant turns of a demo corpus: the time of extracting their
   input feature sets per turn against the time of the `emotion` extractors, which recompute
   those inputs and add the models' predictions (fresh stores, same worker count).

Features of the corpora are cached under data/bench/store (extracted once, not timed).

    .venv/bin/python benchmarks/bench_emotion.py [--skip-ravdess] [--skip-meld] [--skip-finetune]
        [--skip-turns] [--ravdess-loso]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "data" / "bench"
STORE = BENCH / "store"
MODELS = BENCH / "models"
HOLDOUT = ["cv.scheme=holdout", "cv.test_groups=[actor13,actor14,actor15,actor16]"]


def fusion(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fusion.cli", *args], check=True, cwd=ROOT,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def train(config: str, tmp: Path, name: str, *sets: str) -> tuple[dict, float]:
    out = tmp / f"{name}.json"
    args = ["train", "--config", config, "--json", str(out), "--set", "tracking.enabled=false",
            "--set", f"output_dir={tmp / 'outputs'}"]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    fusion(*args)
    return json.loads(out.read_text()), time.perf_counter() - t0


def fmt(stat: dict) -> str:
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def report(title: str, summary: dict, seconds: float) -> dict:
    t = summary["targets"]["emotion"]
    m = t["metrics"]["model"]
    recall = ", ".join(f"{c} {v['recall']['mean']:.2f}" for c, v in t["per_class"].items())
    print(f"\n{title} ({seconds:.0f} s): {t['n_samples']} samples, {t['n_subjects']} subjects, "
          f"{t['n_groups']} {t['group_by']} groups")
    print(f"  UAR {fmt(m['uar'])}  weighted F1 {fmt(m['f1_weighted'])}  macro F1 {fmt(m['f1_macro'])}  "
          f"accuracy {fmt(m['accuracy'])}  ECE {m['ece']['mean']:.3f}")
    print(f"  recall per class: {recall}")
    return {"uar": m["uar"], "f1_weighted": m["f1_weighted"], "seconds": round(seconds, 1)}


RAVDESS_SETS = [f"{base}{copy}" for base in ("egemaps", "compare", "logmel")
                for copy in ("", "_speed09", "_speed11", "_noise20")]


def fitted_folds(summary: dict) -> list[dict]:
    """The run's `fitted_per_fold.json` entries of the emotion target (none when not written)."""
    fitted = Path(summary["outputs"]["dir"]) / "fitted_per_fold.json" if summary.get("outputs") else None
    return json.loads(fitted.read_text())["emotion"] if fitted and fitted.exists() else []


def stacking(summary: dict) -> str:
    """An ensemble's layer weights and the inner figures (weighted F1) of its members and of the
    cross-fitted layer, on the rows the layer was fitted on."""
    out = []
    for f in fitted_folds(summary):
        inner = f.get("inner_validation") or {}
        members = ", ".join(f"{m['f1_weighted']:.3f}" for m in inner.get("members", []))
        weights = ", ".join(f"{w:.2f}" for w in (f.get("layer") or {}).get("weights_", []))
        if inner:
            out.append(f"inner weighted F1 of the members {members}, of the layer "
                       f"{inner['ensemble']['f1_weighted']:.3f} (n {inner['n']}); weights {weights}")
    return "; ".join(out) or "not recorded"


def decision(summary: dict) -> str:
    """The decision rule of each fold: its offsets, and its metric on the training samples the
    rule was fitted on, with the most probable class and with the rule cross-fitted there."""
    out = []
    for f in fitted_folds(summary):
        d = f.get("decision")
        if d:
            out.append(f"fold {f['fold']}: {d['rule']} on {d['n']} training samples {d['before']:.3f} -> "
                       f"{d['crossfit']:.3f} cross-fitted ({d['after']:.3f} in-sample); offsets "
                       + ", ".join(f"{v:+.2f}" for v in d["offsets"]))
    return "; ".join(out) or "none (the most probable class)"


def choices(summary: dict) -> str:
    """Which candidate the selection kept in each outer fold, with the candidates' inner UAR."""
    out = []
    for f in fitted_folds(summary):
        scores = f.get("candidate_scores") or []
        if scores:
            inner = ", ".join(f"{c.get('uar', float('nan')):.3f}" for c in scores)
            out.append(f"fold {f['fold']}: candidate {f['chosen']} (inner UAR {inner})")
    return "; ".join(out)


def ravdess(shared: Path, tmp: Path, loso: bool) -> dict:
    root = shared / "ravdess_dev"
    only = [a for name in RAVDESS_SETS for a in ("--only", name)]
    fusion("extract", "--config", "configs/extract/ravdess.yaml", "--set", f"dataset.root={root}",
           "--set", f"store={STORE}", "--set", "progress=false", *only)
    base = [f"extract.dataset.root={root}", f"extract.store={STORE}"]
    out = {}
    s, sec = train("configs/train/ravdess_emotion.yaml", tmp, "ravdess_nested", *base,
                   f"evaluation.model_dir={MODELS / 'ravdess_emotion'}")
    out["nested, outer folds of 4 actors"] = report("RAVDESS, nested selection, outer folds of 4 of actors 1-16",
                                                    s, sec)
    print(f"  chosen: {choices(s)}")
    s, sec = train("configs/train/ravdess_emotion.yaml", tmp, "ravdess_holdout", *base, *HOLDOUT,
                   "evaluation.save_model=false")
    out["train 1-12, test 13-16"] = report("RAVDESS, nested selection on actors 1-12, tested on 13-16", s, sec)
    print(f"  chosen: {choices(s)}")
    if loso:
        s, sec = train("configs/train/ravdess_logreg.yaml", tmp, "ravdess_loso", *base, "evaluation.save_model=false")
        out["logreg, loso 1-16"] = report("RAVDESS, logistic regressions (clean), leave one actor out", s, sec)
    return out


def meld(shared: Path, tmp: Path, finetune: bool) -> dict:
    root = shared / "meld"
    fusion("extract", "--config", "configs/extract/meld.yaml", "--set", f"dataset.root={root}",
           "--set", f"store={STORE}", "--set", "progress=false",
           "--only", "text", "--only", "tokens", "--only", "tokens_context")
    base = [f"extract.dataset.root={root}", f"extract.store={STORE}"]
    out = {}
    s, sec = train("configs/train/meld_emotion.yaml", tmp, "meld", *base,
                   f"evaluation.model_dir={MODELS / 'meld_emotion'}")
    out["text"] = report("MELD text (MiniLM), train -> dev", s, sec)
    print(f"  decision rule: {decision(s)}")
    s, sec = train("configs/train/meld_emotion.yaml", tmp, "meld_context", *base,
                   "modalities={text: [{features: text}], context: [{features: text, context: 3}]}",
                   "evaluation.save_model=false")
    out["text + dialogue context"] = report("MELD text + context of 3 previous utterances, train -> dev", s, sec)
    s, sec = train("configs/train/meld_dialogue.yaml", tmp, "meld_dialogue", *base, "evaluation.save_model=false")
    out["dialogue model, frozen MiniLM"] = report("MELD dialogue model over frozen MiniLM, train -> dev", s, sec)
    if finetune:
        s, sec = train("configs/train/meld_context_finetune.yaml", tmp, "meld_ctx_ft", *base,
                       f"evaluation.model_dir={MODELS / 'meld_context_finetune'}")
        out["fine-tuned MiniLM with context"] = report("MELD MiniLM fine-tuned with 3 previous utterances, "
                                                       "train -> dev", s, sec)
        s, sec = train("configs/train/meld_ensemble.yaml", tmp, "meld_ensemble", *base,
                       "evaluation.save_model=false")
        out["ensemble"] = report("MELD ensemble (logistic regression, dialogue model, two fine-tunings), "
                                 "train -> dev", s, sec)
        print(f"  {stacking(s)}")
        print(f"  decision rule: {decision(s)}")
    return out


def turns(tmp: Path, sessions: int) -> dict:
    """Input feature sets vs the emotion extractors over the demo corpus's participant turns."""
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    root = BENCH / f"demo{sessions}"
    generate_demo_corpus(root, n_sessions=sessions, seed=0, questions=10, n_jobs=2)
    cfg = {"dataset": {"name": "daic-woz", "root": str(root), "params": {"splits": ["train", "dev"]}},
           "n_jobs": 2, "progress": False, "features": {}}
    turn = {"level": "turn", "speaker": "Participant"}
    models = {"speech": MODELS / "ravdess_emotion" / "emotion", "text": MODELS / "meld_emotion" / "emotion"}
    out = {}
    for kind, model in models.items():
        manifest = json.loads((model / "manifest.json").read_text())
        inputs = {r["features"]: {"extractor": r["extractor"], "segmentation": turn}
                  for m, rs in manifest["inputs"].items() if m in manifest["modalities"] for r in rs}
        times = {}
        for label, features in (("inputs", inputs),
                                ("emotion", {f"{kind}_emotion": {"extractor": {"name": "emotion",
                                                                               "params": {"model": str(model)}},
                                                                 "segmentation": turn}})):
            store = tmp / f"store_{kind}_{label}"
            shutil.rmtree(store, ignore_errors=True)
            path = tmp / f"{kind}_{label}.yaml"
            path.write_text(json.dumps({**cfg, "store": str(store), "features": features}))
            t0 = time.perf_counter()
            fusion("extract", "--config", str(path), "--json", str(tmp / f"{kind}_{label}.json"))
            times[label] = time.perf_counter() - t0
        ratio = times["emotion"] / times["inputs"]
        print(f"\n{kind} recogniser over the participant turns of {sessions} sessions: inputs "
              f"({', '.join(inputs)}) {times['inputs']:.1f} s, emotion extractor {times['emotion']:.1f} s "
              f"({100 * (ratio - 1):+.1f} %)")
        out[kind] = {"inputs_s": round(times["inputs"], 1), "emotion_s": round(times["emotion"], 1),
                     "added_percent": round(100 * (ratio - 1), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-ravdess", action="store_true")
    ap.add_argument("--skip-meld", action="store_true")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-turns", action="store_true")
    ap.add_argument("--ravdess-loso", action="store_true")
    ap.add_argument("--sessions", type=int, default=60, help="demo sessions for the extractor timing")
    args = ap.parse_args()
    shared = os.environ.get("AFFECT_SHARED_DATA")
    if not shared and not (args.skip_ravdess and args.skip_meld):
        sys.exit("AFFECT_SHARED_DATA is not set: RAVDESS and MELD come from ../shared/data")
    print(machine())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_ravdess:
            results["ravdess"] = ravdess(Path(shared), tmp, args.ravdess_loso)
        if not args.skip_meld:
            results["meld"] = meld(Path(shared), tmp, not args.skip_finetune)
        if not args.skip_turns:
            results["turns"] = turns(tmp, args.sessions)
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
