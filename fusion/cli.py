"""The `fusion` command: one subcommand per job of the pipeline (see `fusion --help`).

Every command takes `--config FILE`, repeatable `--set key.path=value` overrides, and
`--json PATH` to write its summary (figures and output paths) for scripting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from features.base import ExtractionError
from features.registry import UnknownNameError

DEFAULT_CONFIGS = {
    "demo": "configs/demo.yaml",
    "extract": "configs/extract/demo.yaml",
    "train": "configs/train/demo_baseline.yaml",
}


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        from features.files import atomic_write_text

        atomic_write_text(json.dumps(payload, indent=2, default=str) + "\n", Path(path))


def _common(p: argparse.ArgumentParser, config: str | None) -> None:
    if config is not None:
        p.add_argument("--config", default=config, help=f"YAML config (default: {config})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.params.C=0.5 (repeatable)")
    p.add_argument("--json", dest="json_path", metavar="PATH",
                   help="also write the command's summary as JSON to PATH")
    p.add_argument("--debug", action="store_true",
                   help="on failure, show the Python traceback instead of one `error:` line")


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.config.load import load_config
    from fusion.config.schema import DemoConfig
    from fusion.demo import run_demo
    from fusion.evaluation.tables import format_summary
    from fusion.extraction import format_extract

    cfg = load_config(DemoConfig, args.config, args.overrides)
    result = run_demo(cfg)
    c = result["corpus"]
    how = "reused" if c["reused"] else f"generated in {c['seconds']:.1f} s"
    print(f"corpus: {c['n_sessions']} sessions (seed {c['seed']}) in {c['root']} ({how})")
    print(format_extract(result["extract"]))
    tr = result["train"]
    print(f"\n{tr['model']} on {', '.join(tr['feature_sets'])}")
    print(format_summary(tr))
    print(f"\noutputs: {tr['outputs']['dir']}")
    print(f"demo finished in {result['seconds']:.1f} s")
    print("\nnext:")
    print(f"  fusion report --run {tr['outputs']['dir']} --participant {c['first_participant'] or '<id>'} --cohort"
          "    # a participant's and the cohort's report, HTML and PDF")
    if tr.get("run_id"):
        print(f"  mlflow ui --backend-store-uri {tr['tracking_uri']}    # the tracked run in the browser")
    print("  fusion features ls    # what the feature store holds")
    return result


def cmd_extract(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.config.load import load_config
    from fusion.config.schema import ExtractConfig
    from fusion.extraction import extract, format_extract

    cfg = load_config(ExtractConfig, args.config, args.overrides)
    result = extract(cfg, only=args.only or None)
    print(format_extract(result))
    dead = [(name, s) for name, s in result["feature_sets"].items()
            if s["failed"] and not s["computed"] and not s["skipped"]]
    if dead:
        result["error"] = "; ".join(f"every sample of feature set {name!r} failed ({s['failed']}); see "
                                    f"{s['errors_path']}" for name, s in dead)
    return result


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.config.load import load_config
    from fusion.config.schema import TrainConfig
    from fusion.protocols.base import PROTOCOLS
    from fusion.training import train

    overrides = list(args.overrides)
    if args.verbose:
        os.environ["FUSION_VERBOSE"] = "1"
    if args.protocol:
        overrides.append(f"protocol={args.protocol}")
    if args.split:
        overrides.append(f"cv.scheme={args.split}")
    cfg = load_config(TrainConfig, args.config, overrides)
    result = train(cfg)
    print(f"{result['model']} on {', '.join(result['feature_sets'])} ({result['protocol']} protocol)")
    print(PROTOCOLS.get(result["protocol"])().format(result))
    return result


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.config.load import load_config
    from fusion.sweep import SweepConfig, format_sweep, run_sweep

    overrides = list(args.overrides)
    for key, value in (("storage", args.storage), ("study", args.study), ("n_trials", args.n_trials)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(SweepConfig, args.config, overrides)
    result = run_sweep(cfg, Path(args.config).parent, Path(args.config).stem)
    print(format_sweep(result))
    if "evaluation" in result:
        from fusion.evaluation.tables import format_summary

        print("\nthe best configuration on the outer protocol (test samples unseen by the trials):")
        print(format_summary(result["evaluation"]))
    return result


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.comparison import compare

    result = compare(args.tracking_uri, args.experiment, Path(args.out), args.metric, args.runs or (),
                     args.filter or "", args.force, args.n_bootstrap, args.include_failed)
    print(Path(result["files"][0]).read_text())
    print("written: " + ", ".join(result["files"]))
    return result


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.report.build import ReportRequest, make_reports

    req = ReportRequest(run=args.run, model=args.model, data=args.config, overrides=args.overrides,
                        participants=args.participants or (), cohort=args.cohort, out=args.out,
                        targets=args.targets or (), hide_text=args.hide_text, pdf=not args.no_pdf,
                        subgroups=args.subgroups or (), tracking_uri=args.tracking_uri, n_draws=args.n_draws,
                        seed=args.seed, track=not args.no_track)
    result = make_reports(req)
    for _sid, why in result.failed.items():
        print(f"error: {why}", file=sys.stderr)
    print("written: " + ", ".join(str(f) for f in result.files))
    print(f"in {result.seconds['total']:.2f} s")
    out = {"files": [str(f) for f in result.files], "failed": result.failed, "warnings": result.warnings,
           "seconds": result.seconds}
    if result.failed:
        out["error"] = (f"{len(result.failed)} of {len(result.failed) + len(result.participants)} participant "
                        "report(s) could not be made (see above); the others were written")
    return out


def cmd_data_describe(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.config.load import load_config
    from fusion.config.schema import DataConfig
    from fusion.describe import describe, format_description

    cfg = load_config(DataConfig, args.config, args.overrides)
    result = describe(cfg)
    print(format_description(result))
    return result


def cmd_data_init(args: argparse.Namespace) -> dict[str, Any]:
    from fusion.scaffold import init_folder

    result = init_folder(args.folder, name=args.name, subject_pattern=args.subject_pattern, configs=args.configs,
                         label=args.label)
    print(f"{result['n_samples']} samples of {result['n_subjects']} subjects ({', '.join(result['roles'])}) → "
          f"{result['labels']}")
    print(f"configs: {result['extract']}, {result['train']}")
    print("to do:")
    for i, step in enumerate(result["todo"], 1):
        print(f"  {i}. {step}")
    print(f"then: fusion extract --config {result['extract']} && fusion train --config {result['train']}")
    return result


def cmd_data_vad_mixture(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from features.files import atomic_write_text
    from fusion.config.load import load_config
    from fusion.config.schema import DataConfig
    from fusion.datasets.base import build_dataset
    from fusion.datasets.vad_mixture import DIMENSIONS, VadMixture, mixture_labels

    cfg = load_config(DataConfig, args.config, args.overrides)
    mixture = VadMixture.build(args.emotions, norms=args.norms, dims=DIMENSIONS[:len(args.columns)],
                               scale=tuple(args.scale), temperature=args.temperature, compound=args.compound)
    labels = build_dataset(cfg.dataset).labels()
    try:
        table, errors = mixture_labels(labels, mixture, args.columns)
    except ValueError as e:
        raise ValueError(f"dataset {cfg.dataset.name} at {cfg.dataset.root} ({args.config}): {e}") from None
    keep = [c for c in ("subject_id", "split") if c in labels.columns]
    table = pd.concat([labels[keep], table], axis=1)
    table.index.name = "sample_id"
    atomic_write_text(table.to_csv(), Path(args.out))
    known = table["vad_mixture_top"].notna()
    for sid, why in errors.items():
        print(f"error: sample {sid}: {why}", file=sys.stderr)
    print(f"{int(known.sum())} of {len(table)} samples labelled ({len(errors)} outside the scale, "
          f"{int((~known).sum()) - len(errors)} without all of {', '.join(args.columns)}) over "
          f"{len(mixture.names)} emotions → {args.out}")
    print("most probable: " + ", ".join(f"{k} {v}" for k, v in table["vad_mixture_top"].value_counts().items()))
    out = {"out": str(args.out), "n": len(table), "labelled": int(known.sum()), "errors": errors,
           "emotions": mixture.names, "top_counts": table["vad_mixture_top"].value_counts().to_dict()}
    if errors:
        out["error"] = (f"{len(errors)} sample(s) have ratings outside --scale {args.scale[0]:g} {args.scale[1]:g} "
                        "(listed above; their rows are empty, the others written)")
    return out


def cmd_features_ls(args: argparse.Namespace) -> dict[str, Any]:
    from features.store import FeatureStore, StoreError

    store = FeatureStore(args.store)
    rows, damaged = [], []
    for path in store.entries():
        try:
            rows.append(store.describe(path))
        except StoreError as err:
            damaged.append({"name": f"{path.parent.name}/{path.stem}", "path": str(path), "error": str(err)})
    if store.hasher.problem:
        print(f"note: {store.hasher.problem}")
    if not rows and not damaged:
        print(f"the feature store {store.root} is empty")
    else:
        print(f"{'name':<44} {'extractor':<10} {'samples':>7} {'rows':>7} {'feats':>6} "
              f"{'errors':>6} {'warned':>6}  created")
        for r in rows:
            errors = "?" if r["n_errors"] is None else r["n_errors"]
            warned = "?" if r["n_warnings"] is None else r["n_warnings"]
            print(f"{r['name']:<44} {r['extractor']:<10} {r['n_samples']:>7} {r['n_rows']:>7} "
                  f"{r['n_features']:>6} {errors:>6} {warned:>6}  {r['created']}")
        for d in damaged:
            print(f"{d['name']:<44} damaged: {d['error']}")
        for r in rows:
            if r["errors_problem"]:
                print(f"note: {r['errors_problem']} (the feature file itself is intact)")
    return {"store": str(store.root), "feature_sets": rows, "damaged": damaged}


def cmd_features_show(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from features.store import FeatureStore

    store = FeatureStore(args.store)
    path = store.resolve(args.name)
    info = store.describe(path)
    frame = store.read(path)
    print(f"{info['name']}  ({path})")
    print(f"shape: {info['n_rows']} rows × {info['n_features']} features, "
          f"{info['n_samples']} samples, "
          + (f"{info['n_errors']} errors, {info['n_warnings']} warnings" if info["errors_problem"] is None
             else f"errors table damaged: {info['errors_problem']}"))
    print(f"extractor: {info['extractor']} v{info['extractor_version']}  "
          f"params: {json.dumps(info['params'])}")
    print(f"segmentation: {json.dumps(info['segmentation'])}")
    print(f"libraries: {json.dumps(info['library_versions'])}  param hash: {info['param_hash'][:16]}")
    with pd.option_context("display.max_columns", 8, "display.width", 140):
        print(frame.head(args.rows))
    info["preview"] = frame.head(args.rows).reset_index().to_dict("records")
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate the demo corpus, extract features, train the baseline")
    _common(p, DEFAULT_CONFIGS["demo"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("extract", help="extract the configured feature sets into the store")
    _common(p, DEFAULT_CONFIGS["extract"])
    p.add_argument("--only", action="append", metavar="NAME",
                   help="extract only this feature set (repeatable)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("train", help="cross-validate a model on cached features")
    _common(p, DEFAULT_CONFIGS["train"])
    p.add_argument("--protocol", metavar="NAME",
                   help="a registered evaluation protocol (default auto: official-multilabel for multi-label "
                        "targets, nested-cv otherwise; trimodal-paper reproduces the tri-modal paper's public-code "
                        "setup, optimistic); an unknown name is an error listing them")
    p.add_argument("--split", choices=["grouped-kfold", "loso", "official", "holdout", "turn-level"],
                   help="shortcut for --set cv.scheme=…; turn-level is leaky, for demonstration only")
    p.add_argument("--verbose", action="store_true",
                   help="show Lightning's own output (banners, warnings) while networks train")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="Optuna search over a train config's keys, then one nested evaluation")
    _common(p, None)
    p.add_argument("--config", required=True, help="sweep config (configs/sweep/<name>.yaml)")
    p.add_argument("--storage", help="SQLAlchemy URL of the study storage (default: SQLite in output_dir)")
    p.add_argument("--study", help="study name; processes with the same storage and study join it")
    p.add_argument("--n-trials", type=int, dest="n_trials", help="finished trials the study should hold")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="tracked runs side by side: metric with CIs, paired differences, configs")
    _common(p, None)
    p.add_argument("--experiment", required=True, help="MLflow experiment of the runs")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db", dest="tracking_uri")
    p.add_argument("--run", action="append", dest="runs", metavar="ID_OR_NAME", help="only these runs (repeatable)")
    p.add_argument("--filter", help="an MLflow filter string, e.g. \"tags.model = 'late-fusion'\"")
    p.add_argument("--metric", default="f1_weighted")
    p.add_argument("--out", default="outputs/compare", help="folder for compare.md/.csv/.html and forest.png")
    p.add_argument("--force", action="store_true", help="compare runs on different data or splits anyway")
    p.add_argument("--include-failed", action="store_true", dest="include_failed",
                   help="also list runs that did not finish (FAILED, RUNNING, KILLED), marked; by default only "
                        "FINISHED runs are compared")
    p.add_argument("--n-bootstrap", type=int, default=1000, dest="n_bootstrap")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="clinician-facing participant and cohort reports (HTML and PDF)")
    _common(p, None)
    p.add_argument("--run", help="the evaluation run: its output folder, or an MLflow run id (with --tracking-uri)")
    p.add_argument("--model", help="the saved model folder (default: the run's model/)")
    p.add_argument("--data", dest="config", help="train config naming the dataset and feature store "
                   "(default: the run's config.yaml)")
    p.add_argument("--participant", action="append", dest="participants", metavar="ID",
                   help="a participant (sample) id to report on (repeatable)")
    p.add_argument("--cohort", action="store_true", help="also write the cohort report (needs the run)")
    p.add_argument("--target", action="append", dest="targets", help="only these targets (repeatable)")
    p.add_argument("--out", help="folder for the HTML and PDF files (default: outputs/reports/<run id>)")
    p.add_argument("--hide-text", action="store_true", dest="hide_text",
                   help="leave transcript excerpts out (when the data licence does not allow showing them)")
    p.add_argument("--subgroup", action="append", dest="subgroups", metavar="COLUMN",
                   help="a labels column to break cohort performance down by (default: gender when present)")
    p.add_argument("--no-pdf", action="store_true", dest="no_pdf", help="HTML only (no Chromium needed)")
    p.add_argument("--no-track", action="store_true", dest="no_track",
                   help="do not log the reports to the MLflow run")
    p.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow tracking URI, to read --run by id")
    p.add_argument("--draws", type=int, default=200, dest="n_draws", help="bootstrap refits for the intervals")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="inspect a dataset")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("describe", help="counts per split and label, subjects, problems")
    _common(q, "configs/data/demo.yaml")
    q.set_defaults(func=cmd_data_describe)
    q = dsub.add_parser("init", help="a folder of recordings → labels.csv skeleton, extract and train configs")
    q.add_argument("folder", help="the folder of media (audio, video, images, .txt texts), in subfolders or flat")
    q.add_argument("--name", help="the configs' name (default: the folder's name)")
    q.add_argument("--subject-pattern", dest="subject_pattern", metavar="REGEX",
                   help="the subject in a file's path, e.g. 'Actor_(\\d+)' (default: the first subfolder)")
    q.add_argument("--configs", default="configs",
                   help="the folder holding extract/ and train/ configs (default: configs)")
    q.add_argument("--label", default="label", help="the label column to fill in (default: label)")
    _common(q, None)
    q.set_defaults(func=cmd_data_init)
    q = dsub.add_parser("vad-mixture", help="VAD-mixture labels: each sample's VAD as a distribution over emotions")
    _common(q, "configs/data/emotic.yaml")
    q.add_argument("--columns", nargs="+", default=["valence", "arousal", "dominance"],
                   help="the valence, arousal (and dominance) label columns, in that order")
    q.add_argument("--scale", nargs=2, type=float, default=[1.0, 10.0], metavar=("LOW", "HIGH"),
                   help="the ratings' range (default: EMOTIC's 1 10)")
    q.add_argument("--emotions", default="basic+compound", help="basic, compound or basic+compound")
    q.add_argument("--norms", help="a norms CSV in the Warriner et al. 2013 layout (default: the shipped rows)")
    q.add_argument("--compound", choices=["midpoint", "product"], default="midpoint")
    q.add_argument("--temperature", type=float, default=1.0)
    q.add_argument("--out", required=True, help="CSV written: sample_id, subject_id, split, ratings, distribution")
    q.set_defaults(func=cmd_data_vad_mixture)

    p = sub.add_parser("features", help="inspect the feature store")
    fsub = p.add_subparsers(dest="features_command", required=True)
    q = fsub.add_parser("ls", help="list cached feature sets")
    q.add_argument("--store", default="features_store")
    _common(q, None)
    q.set_defaults(func=cmd_features_ls)
    q = fsub.add_parser("show", help="shape, parameters and a preview of one feature set")
    q.add_argument("name", help="dataset/stem as `ls` prints it, a unique prefix, or a path")
    q.add_argument("--store", default="features_store")
    q.add_argument("--rows", type=int, default=5)
    _common(q, None)
    q.set_defaults(func=cmd_features_show)
    commands = [a.dest for a in sub._choices_actions]
    parser.description = ("Feature-based multimodal fusion for affective computing: "
                          f"{len(commands)} commands ({', '.join(commands)}); `fusion COMMAND --help` for each.")
    parser.epilog = "A first run: `fusion demo`, then the report command it prints."
    return parser


def describe_error(err: BaseException) -> str:
    """One line for a failure: the project's own errors say what and where; an OS error names
    its file; anything else names its type and points to --debug."""
    from features.store import StoreError
    from fusion.config.schema import ConfigError
    from fusion.datasets.base import DatasetError
    from fusion.evaluation.splits import SplitError

    if isinstance(err, (ConfigError, DatasetError, UnknownNameError, SplitError, ExtractionError, StoreError)):
        return str(err)
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, (FileNotFoundError, ValueError)) and str(err):
        return str(err)
    return f"{type(err).__name__}: {err} (rerun with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; every failure ends in one `error: …` line (exit 2), or a traceback with
    --debug. `fusion extract` exits 1 when every sample of a feature set failed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], dict[str, Any]] = args.func
    try:
        result = func(args)
        _write_json(getattr(args, "json_path", None), {"command": args.command, **result})
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 2
    if result.get("error"):
        print(f"error: {result['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
