"""`fusion compare`: runs tracked by `fusion train`, side by side.

Runs are selected in MLflow by experiment and optionally by run ids or a filter string. For
each run and target the table gives the metric as mean ± sd [95 % CI] (from the run's own
metrics.json), its model, modalities and protocol; for every pair of runs evaluated on the
same samples, folds and seeds, the paired difference with a bootstrap interval over the same
resampled groups, computed from the runs' out-of-fold predictions; the configuration keys
whose values differ between runs; and the runs' reliability diagrams and decision curves
overlaid per target (`curves.png`). Runs on different data (another feature-store hash of a
feature set they share, another dataset) or other splits are refused, saying why, unless
`force`. Writes Markdown, CSV and a self-contained HTML page with a forest plot.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.config.schema import ConfigError


class CompareError(ConfigError):
    """Runs that cannot be compared (different data or splits), or none found."""


def fetch_runs(uri: str, experiment: str, run_ids: Sequence[str] = (), filter_string: str = "") -> list[dict]:
    """Each selected run's id, name, parameters and `metrics.json`, with its artifact folder."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise CompareError(f"no MLflow experiment {experiment!r} at {uri}")
    runs = mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string, output_format="list")
    if run_ids:
        runs = [r for r in runs if r.info.run_id in set(run_ids) or r.info.run_name in set(run_ids)]
    out = []
    for r in runs:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="metrics.json")
            folder = Path(path).parent
        except Exception:  # noqa: BLE001 - a run of another kind (a sweep's), not a `fusion train` run
            continue
        summary = json.loads((folder / "metrics.json").read_text())
        if "targets" not in summary:
            continue
        out.append({"run_id": r.info.run_id, "name": r.info.run_name, "params": dict(r.data.params),
                    "summary": summary, "folder": folder})
    if len(out) < 1:
        raise CompareError(f"no `fusion train` run selected in experiment {experiment!r}")
    return sorted(out, key=lambda r: r["name"] or r["run_id"])


def check_comparable(runs: Sequence[dict]) -> list[str]:
    """Why the runs are not comparable (different dataset, feature files or splits); [] if they are."""
    problems = []
    first = runs[0]["summary"]
    for r in runs[1:]:
        s = r["summary"]
        if s["dataset"] != first["dataset"]:
            problems.append(f"run {r['name']} is on dataset {s['dataset']}, {runs[0]['name']} on {first['dataset']}")
        for fs in set(s["feature_sets"]) & set(first["feature_sets"]):
            if s["feature_sets"][fs]["file_digest"] != first["feature_sets"][fs]["file_digest"]:
                problems.append(f"feature set {fs!r} differs between {runs[0]['name']} and {r['name']} "
                                f"(file digests {first['feature_sets'][fs]['file_digest']} / "
                                f"{s['feature_sets'][fs]['file_digest']})")
        if s["cv"] != first["cv"]:
            keys = sorted(k for k in set(s["cv"]) | set(first["cv"]) if s["cv"].get(k) != first["cv"].get(k))
            problems.append(f"runs {runs[0]['name']} and {r['name']} are split differently (cv keys {keys})")
    return problems


def config_differences(runs: Sequence[dict]) -> pd.DataFrame:
    """The configuration keys (tracked parameters) whose values differ between runs."""
    keys = sorted({k for r in runs for k in r["params"]})
    rows = {k: [r["params"].get(k, "") for r in runs] for k in keys}
    diff = {k: v for k, v in rows.items() if len(set(v)) > 1 and not k.startswith(("output_dir", "tracking."))}
    return pd.DataFrame(diff, index=[r["name"] for r in runs]).T.rename_axis("key").reset_index()


def _fmt(stat: dict) -> str:
    s = f"{stat['mean']:.3f} ± {stat['sd']:.3f}"
    if "ci_low" in stat:
        s += f" [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"
    return s


def metric_table(runs: Sequence[dict], metric: str) -> pd.DataFrame:
    rows = []
    for r in runs:
        s = r["summary"]
        for tname, t in s["targets"].items():
            stat = t["metrics"]["model"].get(metric)
            if stat is None:
                continue
            rows.append({"run": r["name"], "run_id": r["run_id"], "model": s["model"],
                         "modalities": "+".join(s["modalities"]), "target": tname, "metric": metric,
                         "value": _fmt(stat), "mean": stat["mean"], "sd": stat["sd"],
                         "ci_low": stat.get("ci_low", np.nan), "ci_high": stat.get("ci_high", np.nan)})
    if not rows:
        raise CompareError(f"no selected run reports {metric!r}")
    return pd.DataFrame(rows)


def _predictions(run: dict, target: str) -> pd.DataFrame | None:
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=f"{target}_predictions.csv")
    except Exception:  # noqa: BLE001 - not every run keeps them
        return None
    return pd.read_csv(path, dtype={"sample_id": str}).set_index("sample_id")


def paired_differences(runs: Sequence[dict], metric: str, n_bootstrap: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """Metric of run A minus run B on the same samples (mean over repeats, bootstrap over the
    groups of the split), for every pair of runs with the same split and targets."""
    from fusion.evaluation.metrics import bootstrap_ci, multiclass_metrics

    rows = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["summary"]["cv"] != b["summary"]["cv"]:
                continue
            for tname in set(a["summary"]["targets"]) & set(b["summary"]["targets"]):
                pa, pb = _predictions(a, tname), _predictions(b, tname)
                if pa is None or pb is None:
                    continue
                ids = pa.index.intersection(pb.index)
                kind = a["summary"]["targets"][tname].get("kind", "ordinal")
                k = a["summary"]["targets"][tname]["n_classes"]
                reps = sorted({int(c.split("repeat")[1]) for c in pa.columns if "_repeat" in c and c.startswith("p")})

                def probs(p, _ids=ids, _k=k, _reps=reps):
                    return np.stack([p.loc[_ids, [f"p{c}_repeat{r}" for c in range(_k)]].to_numpy() for r in _reps])

                both = np.concatenate([probs(pa), probs(pb)], axis=2)
                y = pa.loc[ids, "y"].to_numpy().astype(int)
                groups = pa.loc[ids, "group" if "group" in pa.columns else "subject_id"].astype(str).to_numpy()
                ok = ~np.isnan(both).any(axis=(0, 2))

                def gain(yy, pp, _k=k, _kind=kind):
                    return (multiclass_metrics(yy, pp[:, :_k], _kind)[metric]
                            - multiclass_metrics(yy, pp[:, _k:], _kind)[metric])

                per_rep = [gain(y[ok], both[r][ok]) for r in range(len(both))]
                lo, hi = bootstrap_ci(gain, y[ok], both[:, ok], groups[ok], n_bootstrap, seed)
                rows.append({"target": tname, "run_a": a["name"], "run_b": b["name"], "metric": metric,
                             "n_samples": int(ok.sum()), "a_minus_b": float(np.mean(per_rep)),
                             "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (floats to 3 decimals)."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def forest_plot(table: pd.DataFrame, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    err = np.vstack([table["mean"] - table["ci_low"], table["ci_high"] - table["mean"]])
    ax.errorbar(table["mean"], y, xerr=np.nan_to_num(err), fmt="o", capsize=3)
    ax.set_yticks(y, [f"{r.run} · {r.target}" for r in table.itertuples()], fontsize=8)
    ax.set_xlabel(f"{metric} (mean, 95 % CI)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves_figure(runs: Sequence[dict]) -> bytes | None:
    """Reliability diagrams (from each run's out-of-fold predictions, repeats pooled) and, for
    targets with a decision curve, the net benefit of each run, overlaid per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fusion.evaluation.metrics import reliability

    targets = sorted({t for r in runs for t in r["summary"]["targets"]})
    panels = [(t, "reliability") for t in targets]
    panels += [(t, "decision") for t in targets if any("decision_curve" in r["summary"]["targets"].get(t, {})
                                                       for r in runs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    drawn = False
    for ax, (t, kind) in zip(axes[0], panels, strict=True):
        for r in runs:
            if kind == "decision":
                dc = r["summary"]["targets"].get(t, {}).get("decision_curve")
                if dc:
                    ax.plot(dc["threshold"], dc["model"], label=r["name"])
                    drawn = True
                continue
            p = _predictions(r, t)
            if p is None:
                continue
            k = r["summary"]["targets"][t]["n_classes"]
            reps = sorted({int(c.split("repeat")[1]) for c in p.columns if c.startswith("p") and "_repeat" in c})
            P = np.concatenate([p[[f"p{c}_repeat{i}" for c in range(k)]].to_numpy() for i in reps])
            y = np.tile(p["y"].to_numpy().astype(int), len(reps))
            ok = ~np.isnan(P).any(1)
            rel = reliability(y[ok], P[ok])
            has = rel["count"] > 0
            ax.plot(rel["confidence"][has], rel["accuracy"][has], "o-", label=r["name"])
            drawn = True
        if kind == "reliability":
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ax.set_xlabel("confidence of the top class")
            ax.set_ylabel("accuracy")
        else:
            first = next((r["summary"]["targets"][t]["decision_curve"] for r in runs
                          if "decision_curve" in r["summary"]["targets"].get(t, {})), None)
            ax.plot(first["threshold"], first["treat_all"], "k:", lw=0.8, label="treat all")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("threshold probability")
            ax.set_ylabel("net benefit")
        ax.set_title(f"{t}: {kind}", fontsize=9)
        ax.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def compare(uri: str, experiment: str, out_dir: Path, metric: str = "f1_weighted", run_ids: Sequence[str] = (),
            filter_string: str = "", force: bool = False, n_bootstrap: int = 1000) -> dict[str, Any]:
    """Compare the selected runs; write compare.md, compare.csv, compare.html, forest.png.

    Raises:
        CompareError: no run selected, or runs on different data or splits (unless `force`).
    """
    from features.files import atomic_write_bytes, atomic_write_text

    runs = fetch_runs(uri, experiment, run_ids, filter_string)
    problems = check_comparable(runs)
    if problems and not force:
        raise CompareError("these runs are not comparable (pass --force to compare anyway): " + "; ".join(problems))
    table = metric_table(runs, metric)
    paired = paired_differences(runs, metric, n_bootstrap)
    configs = config_differences(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = forest_plot(table, metric)
    atomic_write_bytes(png, out_dir / "forest.png")
    atomic_write_text(table.to_csv(index=False), out_dir / "compare.csv")
    shown = table[["run", "model", "modalities", "target", "value"]]
    md = [f"# {metric} of {len(runs)} runs in experiment {experiment}", "", markdown(shown)]
    if problems:
        md += ["", "**Compared although not comparable:** " + "; ".join(problems)]
    if len(paired):
        md += ["", "## Paired differences (same samples and folds; 95 % bootstrap CI over groups)", "",
               markdown(paired)]
    if len(configs):
        md += ["", "## Configuration differences", "", markdown(configs)]
    atomic_write_text("\n".join(md) + "\n", out_dir / "compare.md")
    curves = curves_figure(runs)
    files = ["compare.md", "compare.csv", "compare.html", "forest.png"]
    if curves is not None:
        atomic_write_bytes(curves, out_dir / "curves.png")
        files.append("curves.png")
    img = base64.b64encode(png).decode()
    html = ["<!doctype html><html><head><meta charset='utf-8'><title>fusion compare</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style></head><body>",
            f"<h1>{metric} of {len(runs)} runs in experiment {experiment}</h1>", shown.to_html(index=False),
            f"<p><img alt='forest plot' src='data:image/png;base64,{img}'></p>"]
    if curves is not None:
        html.append(f"<p><img alt='calibration and decision curves' "
                    f"src='data:image/png;base64,{base64.b64encode(curves).decode()}'></p>")
    if problems:
        html.append("<p><b>Compared although not comparable:</b> " + "; ".join(problems) + "</p>")
    if len(paired):
        html += ["<h2>Paired differences</h2>", paired.to_html(index=False, float_format="%.3f")]
    if len(configs):
        html += ["<h2>Configuration differences</h2>", configs.to_html(index=False)]
    html.append("</body></html>")
    atomic_write_text("\n".join(html), out_dir / "compare.html")
    return {"experiment": experiment, "runs": [r["run_id"] for r in runs], "metric": metric,
            "table": table.drop(columns=["value"]).to_dict("records"), "paired": paired.to_dict("records"),
            "config_differences": configs.to_dict("records"), "problems": problems,
            "files": [str(out_dir / f) for f in files]}
