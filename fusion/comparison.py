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


def fetch_runs(uri: str, experiment: str, run_ids: Sequence[str] = (), filter_string: str = "",
               include_failed: bool = False) -> tuple[list[dict], list[str]]:
    """Each selected `fusion train` run's id, name, status, parameters and `metrics.json`,
    with its artifact folder; and notes on the runs left out.

    Only FINISHED runs are compared unless `include_failed` (a failed or running run's
    figures, if any, are not a result); runs of other commands (no `metrics.json` with
    targets) are left out, counted in the notes.

    Raises:
        CompareError: no such experiment, a requested run not found, nothing left to compare.
    """
    from fusion.tracking import import_mlflow, store_errors_named

    mlflow = import_mlflow()
    with store_errors_named(uri):
        mlflow.set_tracking_uri(uri)
        known = mlflow.get_experiment_by_name(experiment)
    if known is None:
        raise CompareError(f"no MLflow experiment {experiment!r} at {uri}")
    try:
        runs = mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string, output_format="list")
    except mlflow.exceptions.MlflowException as err:
        raise CompareError(f"--filter {filter_string!r}: {err.message}") from None
    if run_ids:
        wanted = set(run_ids)
        found = {r.info.run_id for r in runs} | {r.info.run_name for r in runs}
        unknown = sorted(wanted - found)
        if unknown:
            raise CompareError(f"run(s) {unknown} not found in experiment {experiment!r}"
                               f"{' with that filter' if filter_string else ''}")
        runs = [r for r in runs if r.info.run_id in wanted or r.info.run_name in wanted]
    out, notes, unfinished, other, damaged = [], [], {}, 0, []
    for r in runs:
        status = r.info.status
        if status != "FINISHED" and not include_failed:
            unfinished[status] = unfinished.get(status, 0) + 1
            continue
        summary, folder = None, None
        try:
            path = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="metrics.json")
        except Exception:  # noqa: BLE001 - no metrics.json: another command's run, or one that never finished
            path = None
        if path is not None:
            folder = Path(path).parent
            try:
                summary = json.loads(Path(path).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                damaged.append(f"run {r.info.run_name or r.info.run_id}: its metrics.json ({path}) is not valid JSON "
                               f"({err})")
                continue
            if not isinstance(summary, dict) or not isinstance(summary.get("targets"), dict):
                if isinstance(summary, dict) and "targets" in summary:
                    damaged.append(f"run {r.info.run_name or r.info.run_id}: its metrics.json ({path}) is not a "
                                   "`fusion train` summary")
                    continue
                summary = None
        if summary is None and status == "FINISHED":
            other += 1
            continue
        out.append({"run_id": r.info.run_id, "name": r.info.run_name or r.info.run_id, "status": status,
                    "params": dict(r.data.params), "summary": summary, "folder": folder})
    if unfinished:
        notes.append(f"{sum(unfinished.values())} run(s) not finished left out "
                     f"({', '.join(f'{k} {v}' for k, v in sorted(unfinished.items()))}; --include-failed shows them, "
                     "marked)")
    if other:
        notes.append(f"{other} finished run(s) without a `fusion train` metrics.json left out")
    notes += [f"left out: {d}" for d in damaged]
    if not any(r["summary"] is not None for r in out):
        raise CompareError(f"no finished `fusion train` run selected in experiment {experiment!r}"
                           + (f" ({'; '.join(notes)})" if notes else ""))
    return sorted(out, key=lambda r: r["name"]), notes


def check_comparable(runs: Sequence[dict]) -> list[str]:
    """Why the runs are not comparable (different dataset, feature files or splits); [] if they are."""
    problems = []
    scored = [r for r in runs if r["summary"] is not None]
    first = scored[0]["summary"]
    for r in scored[1:]:
        s = r["summary"]
        if s.get("dataset") != first.get("dataset"):
            problems.append(f"run {r['name']} is on dataset {s.get('dataset')}, {scored[0]['name']} on "
                            f"{first.get('dataset')}")
        for fs in set(s.get("feature_sets", {})) & set(first.get("feature_sets", {})):
            a, b = first["feature_sets"][fs].get("file_digest"), s["feature_sets"][fs].get("file_digest")
            if a != b:
                problems.append(f"feature set {fs!r} differs between {scored[0]['name']} and {r['name']} "
                                f"(file digests {a} / {b})")
        if s.get("cv") != first.get("cv"):
            keys = sorted(k for k in set(s.get("cv") or {}) | set(first.get("cv") or {})
                          if (s.get("cv") or {}).get(k) != (first.get("cv") or {}).get(k))
            problems.append(f"runs {scored[0]['name']} and {r['name']} are split differently (cv keys {keys})")
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


# Unweighted average recall and balanced accuracy are one quantity (the mean of per-class recalls):
# nominal targets report it as `uar`, ordinal ones as `balanced_accuracy`.
SAME_METRIC = {"uar": "balanced_accuracy", "balanced_accuracy": "uar"}


def metric_of(stats: dict[str, Any], metric: str) -> str | None:
    """The key under which a target's metrics hold `metric` (itself or its synonym), or None."""
    if metric in stats:
        return metric
    other = SAME_METRIC.get(metric)
    return other if other in stats else None


def metric_table(runs: Sequence[dict], metric: str) -> pd.DataFrame:
    """One row per run and target: the metric as mean ± sd [95 % CI], or why there is none
    (a run that is not finished, a target that does not report the metric)."""
    rows = []
    for r in runs:
        s = r["summary"]
        base = {"run": r["name"], "run_id": r["run_id"], "status": r["status"]}
        if s is None:
            rows.append({**base, "model": r["params"].get("model.name", ""), "modalities": "", "target": "",
                         "metric": metric, "value": f"no results (run {r['status']})", "mean": np.nan,
                         "sd": np.nan, "ci_low": np.nan, "ci_high": np.nan})
            continue
        for tname, t in s["targets"].items():
            stats = t.get("metrics", {}).get("model", {})
            key = metric_of(stats, metric)
            row = {**base, "model": s.get("model", ""), "modalities": "+".join(s.get("modalities", [])),
                   "target": tname, "metric": key or metric}
            if key is None:
                have = ", ".join(k for k in stats if isinstance(stats[k], dict)) or "none"
                rows.append({**row, "value": f"not reported (it reports {have})", "mean": np.nan, "sd": np.nan,
                             "ci_low": np.nan, "ci_high": np.nan})
                continue
            stat = stats[key]
            rows.append({**row, "value": _fmt(stat), "mean": stat["mean"], "sd": stat["sd"],
                         "ci_low": stat.get("ci_low", np.nan), "ci_high": stat.get("ci_high", np.nan)})
    table = pd.DataFrame(rows)
    if table["mean"].isna().all():
        raise CompareError(f"no selected run reports {metric!r}" + (
            f" (or {SAME_METRIC[metric]!r})" if metric in SAME_METRIC else ""))
    return table


def _predictions(run: dict, target: str) -> pd.DataFrame | None:
    from fusion.tracking import import_mlflow

    mlflow = import_mlflow()

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
    scored = [r for r in runs if r["summary"] is not None]
    for i, a in enumerate(scored):
        for b in scored[i + 1:]:
            if a["summary"].get("cv") != b["summary"].get("cv"):
                continue
            for tname in sorted(set(a["summary"]["targets"]) & set(b["summary"]["targets"])):
                pa, pb = _predictions(a, tname), _predictions(b, tname)
                if pa is None or pb is None:
                    continue
                ids = pa.index.intersection(pb.index)
                kind = a["summary"]["targets"][tname].get("kind", "ordinal")
                k = a["summary"]["targets"][tname]["n_classes"]
                key = metric_of(a["summary"]["targets"][tname].get("metrics", {}).get("model", {}), metric)
                if key is None or b["summary"]["targets"][tname].get("n_classes") != k:
                    continue
                reps = sorted({int(c.split("repeat")[1]) for c in pa.columns if "_repeat" in c and c.startswith("p")})

                def probs(p, _ids=ids, _k=k, _reps=reps):
                    return np.stack([p.loc[_ids, [f"p{c}_repeat{r}" for c in range(_k)]].to_numpy() for r in _reps])

                both = np.concatenate([probs(pa), probs(pb)], axis=2)
                y = pa.loc[ids, "y"].to_numpy().astype(int)
                groups = pa.loc[ids, "group" if "group" in pa.columns else "subject_id"].astype(str).to_numpy()
                ok = ~np.isnan(both).any(axis=(0, 2))

                def gain(yy, pp, _k=k, _kind=kind, _key=key):
                    return (multiclass_metrics(yy, pp[:, :_k], _kind)[_key]
                            - multiclass_metrics(yy, pp[:, _k:], _kind)[_key])

                per_rep = [gain(y[ok], both[r][ok]) for r in range(len(both))]
                lo, hi = bootstrap_ci(gain, y[ok], both[:, ok], groups[ok], n_bootstrap, seed)
                rows.append({"target": tname, "run_a": a["name"], "run_b": b["name"], "metric": key,
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

    table = table[table["mean"].notna()]
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

    runs = [r for r in runs if r["summary"] is not None]
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
            filter_string: str = "", force: bool = False, n_bootstrap: int = 1000,
            include_failed: bool = False) -> dict[str, Any]:
    """Compare the selected runs; write compare.md, compare.csv, compare.html, forest.png
    (and curves.png).

    Raises:
        CompareError: no run selected, or runs on different data or splits (unless `force`).
    """
    from features.files import atomic_write_bytes, atomic_write_text
    from fusion.report.render import compare_html

    runs, notes = fetch_runs(uri, experiment, run_ids, filter_string, include_failed)
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
    shown = table[["run", "status", "model", "modalities", "target", "value"]]
    if (shown["status"] == "FINISHED").all():
        shown = shown.drop(columns="status")
    n_with = int(table.loc[table["mean"].notna(), "run_id"].nunique())
    title = f"{metric} of {len(runs)} runs in experiment {experiment}"
    counts = (f"{len(runs)} runs, {len(table)} rows (a row per run and target); {n_with} of the runs report "
              f"{metric}")
    md = [f"# {title}", "", counts, "", markdown(shown)]
    for note in notes:
        md += ["", note]
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
    uri_of = lambda png: "data:image/png;base64," + base64.b64encode(png).decode()  # noqa: E731
    html = compare_html(title=title, counts=counts, notes=notes, problems=problems,
                        table=shown.to_dict("records"), columns=list(shown.columns),
                        paired=paired.to_dict("records"), paired_columns=list(paired.columns),
                        configs=configs.to_dict("records"), config_columns=list(configs.columns),
                        forest=uri_of(png), curves=uri_of(curves) if curves is not None else None)
    atomic_write_text(html, out_dir / "compare.html")
    return {"experiment": experiment, "runs": [r["run_id"] for r in runs], "metric": metric,
            "n_runs": len(runs), "n_runs_with_metric": n_with,
            "table": table.drop(columns=["value"]).to_dict("records"), "paired": paired.to_dict("records"),
            "config_differences": configs.to_dict("records"), "problems": problems, "notes": notes,
            "files": [str(out_dir / f) for f in files]}
