"""Wall time of every documented command on the demo corpus, in the order a newcomer runs them,
each in a fresh working folder (cold: nothing generated, extracted or tracked before), so that
the runtimes the README gives are measured, not guessed.

    .venv/bin/python benchmarks/bench_commands.py [--out DIR] [--full] [--skip NAME …]

`--full` also times the full evaluations (configs/train/atei_full.yaml,
turn_attention_full.yaml), which take much longer. Each command is its own process; the table
gives its wall time and exit status. Machine details are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "configs"


def commands(full: bool) -> list[tuple[str, list[str]]]:
    fusion = [sys.executable, "-m", "fusion.cli"]
    out = [
        ("demo", [*fusion, "demo", "--config", str(C / "demo.yaml"), "--json", "demo.json"]),
        ("extract demo_multimodal", [*fusion, "extract", "--config", str(C / "extract/demo_multimodal.yaml")]),
        ("train demo_baseline", [*fusion, "train", "--config", str(C / "train/demo_baseline.yaml")]),
        ("train severity_late_fusion", [*fusion, "train", "--config", str(C / "train/severity_late_fusion.yaml"),
                                        "--json", "severity.json"]),
        ("train atei", [*fusion, "train", "--config", str(C / "train/atei.yaml")]),
        ("train turn_attention", [*fusion, "train", "--config", str(C / "train/turn_attention.yaml")]),
        ("train interviewer_shortcut", [*fusion, "train", "--config", str(C / "train/interviewer_shortcut.yaml")]),
        ("train --protocol trimodal-paper", [*fusion, "train", "--config", str(C / "train/severity_late_fusion.yaml"),
                                             "--protocol", "trimodal-paper"]),
        ("sweep demo_baseline", [*fusion, "sweep", "--config", str(C / "sweep/demo_baseline.yaml")]),
        ("report (participant + cohort, PDF)", ["REPORT"]),
        ("compare --experiment demo", [*fusion, "compare", "--experiment", "demo", "--force"]),
        ("notebooks (after the demo)", [sys.executable, str(ROOT / "notebooks/execute.py")]),
    ]
    if full:
        out += [("train atei_full", [*fusion, "train", "--config", str(C / "train/atei_full.yaml")]),
                ("train turn_attention_full", [*fusion, "train", "--config",
                                               str(C / "train/turn_attention_full.yaml")])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="working folder (default: a new temporary folder, removed afterwards)")
    ap.add_argument("--full", action="store_true", help="also the full ATEI and turn-attention evaluations")
    ap.add_argument("--skip", action="append", default=[], help="skip a command by its name (repeatable)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_commands_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUSION_NOTEBOOK_DIR": str(work / "notebooks"),
           "FUSION_DEMO_DIR": str(work), "HF_HUB_OFFLINE": "1"}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"working folder {work}", flush=True)
    rows = []
    for name, cmd in commands(args.full):
        if name in args.skip:
            continue
        if cmd == ["REPORT"]:
            severity = json.loads((work / "severity.json").read_text())
            cmd = [sys.executable, "-m", "fusion.cli", "report", "--run", severity["outputs"]["dir"],
                   "--participant", "300", "--cohort"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        rows.append((name, seconds, proc.returncode))
        print(f"{name:<40} {seconds:8.1f} s  exit {proc.returncode}", flush=True)
        if name.startswith("notebooks"):  # each notebook's own time
            print("".join(f"    {line}\n" for line in proc.stdout.splitlines() if " s → " in line), end="", flush=True)
        if proc.returncode:
            print(proc.stderr[-2000:], flush=True)
    print("\n| command | wall time | exit |\n|---|---|---|")
    for name, seconds, code in rows:
        print(f"| {name} | {seconds / 60:.1f} min ({seconds:.0f} s) | {code} |")
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
