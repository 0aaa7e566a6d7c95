"""Report timings: one participant report and the 275-session cohort report on CPU.

The tri-modal severity model (calibrated late fusion, configs/train/severity_late_fusion.yaml)
is trained once on the 275-session demo corpus (cached under data/bench, as bench-train does),
then `fusion report` is timed:

1. one participant, in-process (the model, data and run loaded, content computed, HTML
   written, PDF printed by headless Chromium): median of 5;
2. the same as a whole `fusion report` command (process start and imports included);
3. the cohort report (275 sessions: metrics, reliability and decision curves, subgroups,
   attributions, model card), HTML and PDF, in-process and as a command;
4. all 275 participant reports in one call (HTML and PDF), per report.

Targets: one participant under 2 s, the cohort under 30 s.
    .venv/bin/python benchmarks/bench_report.py [--sessions 275]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import prepare, train  # noqa: E402
from common import machine, run_measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=275)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    from fusion.report.browser import find_chromium

    if find_chromium() is None:
        sys.exit("no Chromium: apt-get install chromium (the PDF is printed by it)")
    root, store = prepare(args.sessions)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary, m = train(root, store, tmp, "severity", "--set", "evaluation.plots=false")
        run = Path(summary["outputs"]["dir"])
        print(f"trained the severity model on {args.sessions} sessions in {m.seconds:.1f} s")
        import pandas as pd

        from fusion.report.build import ReportRequest, make_reports

        ids = list(pd.read_csv(run / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"])
        make_reports(ReportRequest(run=str(run), participants=[ids[0]], out=str(tmp / "warm"), track=False))

        def timed(**kw) -> tuple[float, dict]:
            t0 = time.perf_counter()
            res = make_reports(ReportRequest(run=str(run), out=str(tmp / "r"), track=False, **kw))
            return time.perf_counter() - t0, res.seconds

        rows = []
        for label, kw in (("participant, HTML", {"participants": [ids[1]], "pdf": False}),
                          ("participant, HTML + PDF", {"participants": [ids[1]]}),
                          ("cohort, HTML", {"cohort": True, "pdf": False}),
                          ("cohort, HTML + PDF", {"cohort": True})):
            runs = [timed(**kw) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            parts = runs[len(runs) // 2][1]
            rows.append((label, wall))
            print(f"{label:<28} {wall:6.2f} s (median of {args.repeats}; parts of one: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + ")")
        t0 = time.perf_counter()
        res = make_reports(ReportRequest(run=str(run), participants=ids, out=str(tmp / "all"), track=False))
        total = time.perf_counter() - t0
        print(f"all {len(ids)} participants, HTML + PDF: {total:.1f} s ({total / len(ids):.2f} s per report; "
              + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()) + ")")
        for label, extra in (("command: one participant", ["--participant", ids[2]]),
                             ("command: cohort", ["--cohort"])):
            cmd = [sys.executable, "-m", "fusion.cli", "report", "--run", str(run), "--out", str(tmp / "c"),
                   "--no-track", *extra]
            meas = run_measured(cmd, env={"HF_HUB_OFFLINE": "1"})
            if meas.returncode != 0:
                sys.exit(f"{label} failed with exit code {meas.returncode}")
            print(f"{label:<28} {meas.seconds:6.2f} s wall, peak RSS {meas.peak_rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
