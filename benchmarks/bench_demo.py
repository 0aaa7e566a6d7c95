"""Wall time and peak memory of `fusion demo` (default config), cold and then warm.

Cold: fresh folders, so the corpus is generated, every feature extracted and the MLflow
database created. Warm: the same folders again, so the corpus and features are reused.

    .venv/bin/python benchmarks/bench_demo.py [--sessions 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=None, help="override corpus.n_sessions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        tmp = Path(tmp)
        sets = [f"extract.dataset.root={tmp / 'data'}", f"extract.store={tmp / 'store'}",
                "extract.progress=false",
                f"train.tracking.uri=sqlite:///{tmp / 'mlruns' / 'mlflow.db'}",
                f"train.tracking.artifacts={tmp / 'mlruns' / 'artifacts'}",
                f"train.output_dir={tmp / 'outputs'}"]
        if args.sessions:
            sets.append(f"corpus.n_sessions={args.sessions}")
        rows = []
        for phase in ("cold", "warm"):
            out = tmp / f"{phase}.json"
            cmd = [sys.executable, "-m", "fusion.cli", "demo", "--config", str(ROOT / "configs/demo.yaml"),
                   "--json", str(out)]
            for s in sets:
                cmd += ["--set", s]
            m = run_measured(cmd)
            if m.returncode != 0:
                sys.exit(f"fusion demo failed ({phase}) with exit code {m.returncode}")
            res = json.loads(out.read_text())
            mets = res["train"]["targets"]["depression"]["metrics"]["model"]
            auc, bacc = mets["auc_ovr"], mets["balanced_accuracy"]
            rows.append((phase, m.seconds, m.peak_rss_mib, res["corpus"]["n_sessions"], auc, bacc))
    print(f"\nmachine: {machine()}")
    print("| run | sessions | wall time (s) | peak RSS, process tree (MiB) "
          "| AUC mean ± sd [95% CI] | balanced acc. |")
    print("|---|---|---|---|---|---|")
    for phase, sec, mib, n, auc, bacc in rows:
        print(f"| {phase} | {n} | {sec:.1f} | {mib:.0f} | {auc['mean']:.3f} ± {auc['sd']:.3f} "
              f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}] | {bacc['mean']:.3f} ± {bacc['sd']:.3f} |")


if __name__ == "__main__":
    main()
