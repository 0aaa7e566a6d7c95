"""`fusion report`: gather the model, the evaluation run and the data, compute each report's
content, write the HTML (atomically), print the PDF with headless Chromium, and track the files
in the MLflow run when one is given."""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.files import atomic_write_bytes, atomic_write_text
from features.registry import exception_text
from fusion.datasets.base import codebook_of, decode
from fusion.evaluation.flags import run_flags
from fusion.report import content, render
from fusion.report.sources import (
    ReportError,
    Run,
    TargetModel,
    feature_mismatches,
    load_targets,
    model_dir_of,
    resolve_run,
    run_of_model,
)


@dataclass
class ReportRequest:
    """What to report on. `run` is a run folder or MLflow run id; `model` a model folder
    (default: the run's); `data` a train config (default: the run's `config.yaml`); `out` the
    folder written (default: `outputs/reports/<run id, or the model folder's name and a digest
    of its path>`, so that reports of different runs never share a folder)."""

    run: str | None = None
    model: str | None = None
    data: str | None = None
    overrides: Sequence[str] = ()
    participants: Sequence[str] = ()
    cohort: bool = False
    out: str | None = None
    targets: Sequence[str] = ()
    hide_text: bool = False
    pdf: bool = True
    subgroups: Sequence[str] = ()
    tracking_uri: str | None = None
    n_draws: int = 200
    seed: int = 0
    track: bool = True


@dataclass
class ReportResult:
    files: list[Path] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def safe_name(text: str) -> str:
    """`text` as a file name: unchanged when it is one already; otherwise its unsafe characters
    replaced and a digest of the original appended, so that different texts never share a
    name (`s 1` → `s_1-1f0c…`, while `s_1` stays `s_1`)."""
    text = str(text)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:80]
    if cleaned == text:
        return text
    return f"{cleaned or 'id'}-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


@contextlib.contextmanager
def damage_named(model_dir: Path, run: Run | None):
    """Turn an unexpected failure while computing a report into one naming what it was read
    from: the model folder and the run folder (a file in one of them edited or damaged)."""
    try:
        yield
    except ReportError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
        what = exception_text(err)
        run_part = f" and the run folder {run.folder}" if run is not None else ""
        raise ReportError(f"the model folder {model_dir}{run_part} do not fit together or one of their files is "
                          f"damaged ({what}); save the model again with `fusion train`") from err


def check_unique_names(ids: Sequence[str]) -> None:
    """Refuse ids whose report files would share a name on a case-insensitive file system.

    Raises:
        ReportError: naming the ids.
    """
    seen: dict[str, str] = {}
    for sid in ids:
        name = safe_name(sid).lower()
        if name in seen:
            raise ReportError(f"participants {seen[name]!r} and {sid!r} would be written to the same report file "
                              f"(participant_{safe_name(sid)}.html, ignoring case); report them with separate --out")
        seen[name] = sid


def default_out(run: Run | None, model_dir: Path) -> Path:
    """`outputs/reports/<the run's id or folder name>`, or for a model alone
    `outputs/reports/<model folder>-<digest of its absolute path>`."""
    if run is not None:
        return Path("outputs/reports") / safe_name(run.run_id or run.folder.resolve().name)
    where = str(Path(model_dir).resolve())
    digest = hashlib.blake2b(where.encode(), digest_size=4).hexdigest()
    return Path("outputs/reports") / f"{safe_name(Path(where).name)}-{digest}"


def model_card(targets: dict[str, TargetModel], run: Run | None, cfg=None) -> dict[str, Any]:
    """The model card's facts, from the saved model's training record and the run's summary."""
    first = next(iter(targets.values()), None)
    training = first.training if first else {}
    summary = run.summary if run else {}
    cv = training.get("cv") or summary.get("cv") or {}
    root = training.get("root") or (str(cfg.extract.dataset.root) if cfg is not None and cfg.extract else None)
    synthetic = bool(root and (Path(root) / "demo_corpus.json").exists())
    book = codebook_of(cfg.extract.dataset) if cfg is not None and cfg.extract else {}
    model_name = first.manifest["model"] if first else summary.get("model", "?")
    params = first.manifest.get("params", {}) if first else {}
    desc = model_name
    if model_name == "late-fusion":
        learner = params.get("learner", {}).get("name")
        desc = (f"calibrated late fusion: one {learner} model per modality, {params.get('calibration')} calibration, "
                f"{params.get('fusion')} fusion layer")
    scheme = cv.get("scheme", "?")
    protocol = (f"{scheme}, {cv.get('n_splits')} folds × {cv.get('n_repeats')} repeats grouped by participant, "
                f"{cv.get('inner_splits')} inner folds" if scheme == "grouped-kfold" else f"{scheme} ({cv})")
    performance, failures = {}, []
    for tname, _tm in targets.items():
        ts = summary.get("targets", {}).get(tname, {})
        mets = ts.get("metrics", {}).get("model", {})
        keep = [k for k in ("f1_weighted", "balanced_accuracy", "uar", "qwk", "ece") if k in mets]
        if keep:
            performance[tname] = [(content.METRIC_NAMES[k], mets[k]) for k in keep]
        adj = content._adjacent_share(ts.get("confusion")) if ts.get("kind") == "ordinal" else None
        if adj is not None:
            failures.append(f"{tname}: confusion between adjacent severity classes — {adj:.0%} of the held-out "
                            "errors were one class off; treat neighbouring classes as uncertain.")
        drops = [f"{name[5:]} {stats['f1_weighted']['mean']:.2f}" for name, stats in ts.get("metrics", {}).items()
                 if name.startswith("drop:") and "f1_weighted" in stats]
        if drops and "f1_weighted" in mets:
            failures.append(f"{tname}: with one modality missing, the held-out weighted F1 of "
                            f"{mets['f1_weighted']['mean']:.2f} became, without " + ", without ".join(drops) + ".")
    failures += ["Missing modalities: an estimate from fewer modalities rests on less evidence; the report says which "
                 "were absent.",
                 "Shift: recordings, interviewers, languages or populations unlike the training data can change the "
                 "estimates in ways the evaluation above did not measure.",
                 "Questionnaire outcome: PHQ-8 and PTSD checklists are self-reports, themselves imperfect measures of "
                 "the condition."]
    if synthetic:
        failures.insert(0, "Trained on a synthetic demo corpus: no figure here transfers to real people.")
    mods = []
    for m in (first.model.modalities if first else summary.get("modalities", [])):
        recipes = first.manifest.get("inputs", {}).get(m, []) if first else []
        sets = ", ".join(f"{r['features']} ({r['extractor']['name']})" for r in recipes) or m
        mods.append({"name": m, "sets": sets})
    return {
        "model": model_name, "model_desc": desc, "commit": training.get("git_commit") or summary.get("git", {}).get(
            "git_commit"), "dirty": training.get("git_dirty") or summary.get("git", {}).get("git_dirty"),
        "dataset": training.get("dataset") or summary.get("dataset", "?"), "root": root, "synthetic": synthetic,
        "n_samples": training.get("n_samples") or "?", "n_subjects": training.get("n_subjects"),
        "composition": {col: {decode(book, col, v): n for v, n in counts.items()}
                        for col, counts in (training.get("composition") or {}).items()} or None,
        "availability": training.get("modality_available"),
        "targets": [{"name": t, "label": tm.label, "positive_name": tm.target.get("positive_name"),
                     "score": tm.target.get("score"),
                     "class_counts": list(zip(tm.class_names, tm.training.get("class_counts", []), strict=False))}
                    for t, tm in targets.items()],
        "outcomes": ", ".join(f"{tm.label}" for tm in targets.values()), "modalities": mods,
        "protocol": protocol, "performance": performance, "failures": failures,
        "flags": [f for f in run_flags(summary) if f["target"] in targets or f["target"] is None]}


def _load_data(req: ReportRequest, run: Run | None):
    from fusion.config.load import load_config
    from fusion.config.schema import TrainConfig
    from fusion.data.blocks import load_model_data

    path = req.data or (run.config_path if run else None)
    if path is None:
        raise ReportError("no data: give --data CONFIG (the train config naming the dataset and feature store)")
    cfg = load_config(TrainConfig, path, list(req.overrides))
    return cfg, load_model_data(cfg)


def make_reports(req: ReportRequest) -> ReportResult:
    """Write the requested participant and cohort reports; see `ReportRequest`.

    Raises:
        ReportError: nothing asked, no model or run, unknown participants or targets, an
            incomplete model folder, data whose columns differ from the model's.
    """
    if not req.participants and not req.cohort:
        raise ReportError("nothing to report: give --participant ID (repeatable) and/or --cohort")
    t0 = time.perf_counter()
    result = ReportResult()
    run = resolve_run(req.run, req.tracking_uri) if req.run else None
    model_dir = Path(req.model) if req.model else (model_dir_of(run) if run else None)
    if model_dir is None:
        raise ReportError("give --run RUN (a run folder or MLflow run id) or --model DIR")
    targets = load_targets(model_dir, list(req.targets) or None)
    if run is None:
        run = run_of_model(model_dir)
    if req.cohort and run is None:
        raise ReportError(f"the cohort report needs the evaluation run of {model_dir} (its held-out predictions): "
                          "give --run")
    out = Path(req.out) if req.out else default_out(run, model_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, data = _load_data(req, run)
    for tm in targets.values():
        for line in feature_mismatches(tm, data.provenance):
            msg = f"WARNING: {tm.name} model: {line}"
            if msg not in result.warnings:
                result.warnings.append(msg)
        for m in tm.model.modalities:
            if m not in data.blocks:
                raise ReportError(f"the data config has no modality {m!r}, which the {tm.name} model needs "
                                  f"(it has {list(data.blocks)})")
            want, have = tm.model.columns.get(m), data.columns.get(m)
            if want and have and list(want) != list(have):
                extra = sorted(set(have) - set(want))[:3]
                lack = sorted(set(want) - set(have))[:3]
                raise ReportError(f"modality {m!r}: the data's columns differ from the {tm.name} model's "
                                  f"(model has {len(want)}, data {len(have)}; missing {lack}, unexpected {extra})")
    for w in result.warnings:
        print(w, file=sys.stderr)
    card = model_card(targets, run, cfg)
    result.seconds["load"] = time.perf_counter() - t0
    rendered: list[tuple[Path, Path | None]] = []
    if req.participants:
        t1 = time.perf_counter()
        ids = list(dict.fromkeys(str(p) for p in req.participants))  # one report per participant
        check_unique_names(ids)
        with damage_named(model_dir, run):
            contents, failed = content.participants(targets, data.blocks, data.labels, ids, run=run,
                                                    dataset=data.dataset, provenance=data.provenance,
                                                    hide_text=req.hide_text, n_draws=req.n_draws, seed=req.seed)
        result.failed.update(failed)
        for sid, p in contents.items():
            for t in p["targets"].values():
                note = t.get("turns_note")
                if note and f"WARNING: participant {sid}: {note}" not in result.warnings:
                    result.warnings.append(f"WARNING: participant {sid}: {note}")
                    print(result.warnings[-1], file=sys.stderr)
            html = render.participant_html(p, card, warnings=result.warnings, run_id=run.run_id if run else None,
                                           hide_text=req.hide_text)
            path = out / f"participant_{safe_name(sid)}.html"
            atomic_write_text(html, path)
            result.files.append(path)
            result.participants.append(sid)
            rendered.append((path, path.with_suffix(".pdf") if req.pdf else None))
        result.seconds["participants_html"] = time.perf_counter() - t1
    if req.cohort:
        t1 = time.perf_counter()
        with damage_named(model_dir, run):
            c = content.cohort(run, targets, data.labels, req.subgroups, seed=req.seed,
                               codebook=codebook_of(cfg.extract.dataset))
        path = out / "cohort.html"
        atomic_write_text(render.cohort_html(c, card), path)
        result.files.append(path)
        rendered.append((path, path.with_suffix(".pdf") if req.pdf else None))
        result.seconds["cohort_html"] = time.perf_counter() - t1
    if req.pdf:
        from fusion.report.browser import Browser

        t1 = time.perf_counter()
        with Browser() as browser:
            for html_path, pdf_path in rendered:
                page = browser.render(html_path, pdf=True)
                if page.external_requests:
                    raise ReportError(f"{html_path}: the page asked for {page.external_requests[:3]}; a report "
                                      "must not load anything from the network")
                atomic_write_bytes(page.pdf, pdf_path)
                result.files.append(pdf_path)
        result.seconds["pdf"] = time.perf_counter() - t1
    if req.track and run is not None and run.run_id and run.tracking_uri and result.files:
        _track(run, result.files)
    result.seconds["total"] = time.perf_counter() - t0
    return result


def _track(run: Run, files: list[Path]) -> None:
    """Log the reports to the MLflow run under `reports/`."""
    from fusion.tracking import import_mlflow

    mlflow = import_mlflow()

    client = mlflow.tracking.MlflowClient(tracking_uri=run.tracking_uri)
    for f in files:
        client.log_artifact(run.run_id, str(f), artifact_path="reports")
