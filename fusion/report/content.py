"""What each report says, computed from the model, the evaluation run and the data; rendering
(`fusion.report.render`) only lays it out.

Participant: for each target, the calibrated probability of every class with an interval, the
probability of the positive outcome, the predicted score, the modalities present and each one's
share of the fused decision, the features behind the decision in plain language placed against
the training cohort, and for sequence models the turns that contributed most (Integrated
Gradients, Captum). A participant the model was trained on is shown with the held-out estimate
of the evaluation (the final model's own estimate for them would be in-sample).

Cohort: performance with confidence intervals on the evaluation protocol, calibration, decision
curves with their reading, subgroup performance, attributions over the cohort and provenance.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.glossary import describe
from fusion.data.sequences import SequenceBlock, available
from fusion.datasets.base import decode
from fusion.report.sources import ReportError, Run, TargetModel, changed_source

INTERVAL = 0.90
METRIC_NAMES = {"f1_weighted": "weighted F1", "balanced_accuracy": "balanced accuracy", "uar": "UAR",
                "accuracy": "accuracy", "qwk": "quadratic weighted kappa", "auc_ovr": "AUC (one-vs-rest)",
                "adjacent_accuracy": "within one class", "ece": "calibration error (ECE)", "brier": "Brier score",
                "f1_macro": "macro F1", "mae": "mean absolute error", "rmse": "root mean squared error"}
MODALITY_WORDS = {"text": "what the participant said (sentence embeddings of the transcript)",
                  "audio": "how the voice sounded (acoustic features)",
                  "face": "facial behaviour (action units, gaze, head pose from video)"}


def rows_of(blocks: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {m: b[rows] for m, b in blocks.items()}


def percentile_of(value: float, quantiles: np.ndarray) -> float:
    """Where `value` falls in a feature's training distribution (its percentiles 0..100): 0
    below the cohort, 100 above it, the middle of the tied run for a value many share."""
    q = np.asarray(quantiles, float)
    if not np.isfinite(value) or not np.isfinite(q).all():
        return float("nan")
    grid = np.linspace(0.0, 100.0, len(q))
    first, last = np.searchsorted(q, value, "left"), np.searchsorted(q, value, "right")
    if last > first:
        return float((grid[first] + grid[last - 1]) / 2)
    if first == 0:
        return 0.0
    if first == len(q):
        return 100.0
    return float(np.interp(value, q, grid))


def figure_uri(fig) -> str:
    """A matplotlib figure as an embedded PNG data URI (no file, no network)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# --- participant --------------------------------------------------------------------------------

def held_out(run: Run | None, target: str, sample_ids: Sequence[str], k: int) -> dict[str, dict[str, Any]]:
    """The evaluation's out-of-fold probabilities (repeats × classes) and predicted scores of
    each of `sample_ids` that the run scored."""
    if run is None:
        return {}
    preds = run.predictions(target, k)
    if preds is None:
        return {}
    preds = preds.set_index("sample_id")
    reps = sorted({int(c.rsplit("repeat", 1)[1]) for c in preds.columns if c.startswith("p0_repeat")})
    out = {}
    for sid in sample_ids:
        if sid not in preds.index:
            continue
        row = preds.loc[sid]
        P = np.array([[row[f"p{c}_repeat{r}"] for c in range(k)] for r in reps], dtype=float)
        ok = ~np.isnan(P).any(1)
        if not ok.any():
            continue
        S = np.array([row.get(f"score_pred_repeat{r}", np.nan) for r in reps], dtype=float)
        out[sid] = {"P": P[ok], "S": S[ok][~np.isnan(S[ok])]}
    return out


def turn_texts(dataset, sample_id: str, recipe: dict[str, Any],
               provenance: Mapping[str, Mapping[str, Any]] | None = None
               ) -> tuple[list[tuple[float, float, str]], str | None]:
    """(start, end, words) of the sample's turns, segmented as the model's inputs were, and a
    warning instead of the words when the transcript is not the one the features came from
    (edited since extraction: `fusion.report.sources.changed_source`)."""
    from features.align import SegmentationConfig, turns_from_transcript

    sample = next((s for s in dataset.samples() if s.sample_id == sample_id), None)
    path = None if sample is None else sample.media.get("transcript")
    if path is None or not Path(path).exists():
        return [], None
    changed = changed_source(provenance or {}, recipe.get("features"), sample_id, Path(path))
    if changed:
        return [], changed
    seg = turns_from_transcript(Path(path), SegmentationConfig(**recipe.get("segmentation", {})))
    return [(s.start, s.end, s.text or "") for s in seg.segments], None


def participants(targets: Mapping[str, TargetModel], blocks: Mapping[str, Any], labels: pd.DataFrame,
                 sample_ids: Sequence[str], *, run: Run | None = None, dataset=None,
                 provenance: Mapping[str, Mapping[str, Any]] | None = None, hide_text: bool = False,
                 n_draws: int = 200, top_features: int = 4, top_turns: int = 5,
                 seed: int = 0) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each participant's report content, and the participants that cannot be reported (id →
    reason: no data in any of the model's modalities).

    Raises:
        ReportError: an id that is not in the data (naming some that are).
    """
    index = pd.Index(labels.index.astype(str))
    unknown = [s for s in sample_ids if s not in index]
    if unknown:
        known = ", ".join(index[:8]) + (" …" if len(index) > 8 else "")
        raise ReportError(f"unknown participant(s) {unknown}: not in the data ({len(index)} samples: {known})")
    rows = np.array([index.get_loc(s) for s in sample_ids], dtype=int)
    sub = rows_of(blocks, rows)
    present = {m: available(b) for m, b in sub.items()}
    failed: dict[str, str] = {}
    for j, sid in enumerate(sample_ids):
        if not any(present[m][j] for m in sub):
            failed[sid] = (f"participant {sid} has no data in any of the model's modalities ({', '.join(sub)}): "
                           "every feature set is missing for this session, so there is nothing to estimate from")
    keep = [j for j, sid in enumerate(sample_ids) if sid not in failed]
    out: dict[str, dict[str, Any]] = {sid: {"id": sid, "targets": {}} for j, sid in enumerate(sample_ids)
                                      if j in keep}
    if not keep:
        return out, failed
    kept = np.array(keep)
    sub = {m: b[kept] for m, b in sub.items()}
    ids = [sample_ids[j] for j in keep]
    for tname, tm in targets.items():
        contents = target_content(tm, sub, labels, ids, run=run, dataset=dataset, provenance=provenance,
                                  hide_text=hide_text, n_draws=n_draws, top_features=top_features,
                                  top_turns=top_turns, seed=seed)
        for sid, content in zip(ids, contents, strict=True):
            out[sid]["targets"][tname] = content
        for sid, j in zip(ids, range(len(ids)), strict=True):
            out[sid]["modalities"] = {m: bool(available(b)[j]) for m, b in sub.items()}
    return out, failed


def target_content(tm: TargetModel, blocks: Mapping[str, Any], labels: pd.DataFrame, ids: list[str], *,
                   run: Run | None, dataset, hide_text: bool, n_draws: int, top_features: int, top_turns: int,
                   provenance: Mapping[str, Mapping[str, Any]] | None = None,
                   seed: int) -> list[dict[str, Any]]:
    """One target's part of each participant's report (see `participants`)."""
    model, names = tm.model, tm.class_names
    mods = [m for m in model.modalities if m in blocks]
    blocks = {m: blocks[m] for m in model.modalities}
    k = model.n_classes
    proba = model.predict_proba(blocks)
    draws = model.bootstrap_predictions(blocks, n_draws, seed)
    score = score_draws = None
    if tm.score_model is not None:
        score = tm.score_model.predict(blocks)
        score_draws = tm.score_model.bootstrap_predictions(blocks, n_draws, seed)
    elif model.scores_jointly():
        score = model.predict_score(blocks)
    calibrated = model.uncalibrated_proba(blocks) is not None  # the contract: None when it does not calibrate
    shares = model.modality_contributions(blocks)
    feats = model.feature_contributions(blocks)
    turns = model.turn_contributions(blocks)
    trained_on = set(tm.training.get("sample_ids", []))
    oof = held_out(run, tm.name, ids, k)
    pos = tm.target.get("positive_from")
    lo_q, hi_q = (1 - INTERVAL) / 2 * 100, (1 + INTERVAL) / 2 * 100
    drops = _drop_effects(run, tm.name)
    out = []
    for i, sid in enumerate(ids):
        c: dict[str, Any] = {"name": tm.name, "label": tm.label, "classes": names,
                             "positive_name": tm.target.get("positive_name"), "in_training": sid in trained_on,
                             "warning": None, "calibrated": calibrated}
        if sid in trained_on and sid in oof:
            P = oof[sid]["P"]
            p = P.mean(0)
            spread = len(P) >= 2
            lo, hi = (P.min(0), P.max(0)) if spread else (np.full(k, np.nan), np.full(k, np.nan))
            ppos = P[:, pos:].sum(1) if pos is not None else None
            c["source"] = (f"held-out estimate: the mean over the {len(P)} cross-validation repeat(s) of the "
                           "evaluation, each from a model that did not see this participant")
            c["interval"] = (f"range over the {len(P)} repeats (not a confidence interval)" if spread
                             else "one repeat: no range")
            c["interval_short"] = f"range over {len(P)} repeats" if spread else "range"
            c["pos"] = None if ppos is None else (float(ppos.mean()), *((float(ppos.min()), float(ppos.max()))
                                                                        if spread else (np.nan, np.nan)))
            S = oof[sid]["S"]
            c["score"] = None if not len(S) else (float(S.mean()), *((float(S.min()), float(S.max()))
                                                                     if len(S) >= 2 else (np.nan, np.nan)))
        else:
            p = proba[i]
            if draws is not None and not np.isnan(draws[:, i]).all():
                lo, hi = np.nanpercentile(draws[:, i], [lo_q, hi_q], axis=0)
                dpos = draws[:, i, pos:].sum(1) if pos is not None else None
                c["source"] = "the saved model"
                c["interval"] = (f"{INTERVAL:.0%} bootstrap interval of the fusion layer refitted {n_draws} times "
                                 "(the per-modality models kept fixed)")
                c["interval_short"] = f"{INTERVAL:.0%} interval"
            else:
                lo = hi = np.full(k, np.nan)
                dpos = None
                c["source"] = "the saved model"
                c["interval"] = "this model type gives no interval"
                c["interval_short"] = "interval"
            ppos = float(p[pos:].sum()) if pos is not None else None
            c["pos"] = None if ppos is None else (
                ppos, *(np.nanpercentile(dpos, [lo_q, hi_q]) if dpos is not None else (np.nan, np.nan)))
            c["score"] = None
            if score is not None:
                s_lo = s_hi = np.nan
                if score_draws is not None and not np.isnan(score_draws[:, i]).all():
                    s_lo, s_hi = np.nanpercentile(score_draws[:, i], [lo_q, hi_q])
                c["score"] = (float(score[i]), float(s_lo), float(s_hi))
            if sid in trained_on:
                c["warning"] = ("This participant was in the model's training data, and no evaluation run with their "
                                "held-out estimate was given: these figures are in-sample and optimistic.")
        c["proba"] = [(names[j], float(p[j]), float(lo[j]), float(hi[j])) for j in range(k)]
        top = int(np.argmax(p))
        c["decision"] = None
        offsets = tm.model.decision_offsets()
        if offsets is not None:  # the class the saved model's decision rule names for these probabilities
            from fusion.evaluation.decision import decide

            named = int(decide(p[None, :], offsets)[0])
            if named != top:
                c["decision"] = {"named": names[named], "rule": tm.model.decision_["rule"],
                                 "most_probable": names[top]}
        c["recorded"] = _recorded(tm, labels, sid, names)
        c["headline"] = headline(p, names, tm.target.get("kind") or "ordinal", c["pos"], tm.target.get("positive_name"),
                                 c["score"], tm.target.get("score"), tm.target.get("score_ranges"))
        c["conformal"] = conformal_content(tm, p, c["score"], labels, sid, names)
        c["modalities"], c["explained"], c["explained_note"] = _evidence(
            tm, blocks, mods, shares, feats, i, top, int(np.argmax(proba[i])), drops, top_features)
        c["features"] = [m for m in c["modalities"] if m.get("items") or m.get("opaque")]
        c["turns"], c["turns_note"] = (_turns(tm, blocks, turns, i, sid, dataset, provenance, hide_text, top_turns)
                                       if turns else (None, None))
        out.append(c)
    return out


def conformal_content(tm: TargetModel, p: np.ndarray, score, labels: pd.DataFrame, sid: str,
                      names: list[str]) -> dict[str, Any] | None:
    """The participant's conformal set at the saved model's report level (the contiguous
    `ordinal` set for ordered classes, `aps` otherwise; conservative, never empty), with the
    threshold of their group where the group had its own, and the score interval — from the
    thresholds saved with the model (`fusion.protocols.nested_cv.final_conformal`).

    Raises:
        ReportError: damaged thresholds in the manifest, naming it.
    """
    saved = tm.manifest.get("conformal")
    if not saved:
        return None
    try:
        return _conformal_set(tm, saved, p, score, labels, sid, names)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ReportError(f"{tm.folder / 'manifest.json'}: damaged conformal thresholds ({type(err).__name__}: "
                          f"{err}); save the model again with `fusion train`") from None


def _conformal_set(tm: TargetModel, saved: Mapping[str, Any], p: np.ndarray, score, labels: pd.DataFrame, sid: str,
                   names: list[str]) -> dict[str, Any] | None:
    from fusion.evaluation.conformal import Thresholds, describe_set, prediction_sets, score_intervals

    alpha = float(saved["report_alpha"])
    ordinal = (tm.target.get("kind") or "ordinal") == "ordinal"
    wanted = "ordinal" if ordinal else "aps"
    found = [Thresholds.from_dict(t) for t in saved.get("sets", []) if float(t["alpha"]) == alpha]
    t = next((x for x in found if x.score == wanted), found[0] if found else None)
    if t is None:
        return None
    group = None
    column = saved.get("group_by")
    if column and column in labels.columns and sid in labels.index.astype(str):
        raw = labels.loc[labels.index.astype(str) == sid, column].iloc[0]
        text = str(int(raw)) if isinstance(raw, float) and float(raw).is_integer() else str(raw)
        group = saved.get("codes", {}).get(text, text)
    own = group is not None and group in t.groups
    q = t.groups[group] if own else t.marginal
    members = prediction_sets(np.asarray(p)[None, :], q, t.score)[0]
    out: dict[str, Any] = {"level": f"{1 - alpha:.0%}", "alpha": alpha, "score_name": t.score,
                           "set": describe_set(members, names, ordinal and t.score == "ordinal"),
                           "n_in": int(members.sum()), "n_classes": len(names), "interval": None,
                           "group": f"{column}: {group}" if own else None, "n_calibration": saved.get("n_calibration")}
    iv = next((x for x in saved.get("intervals", []) if float(x["alpha"]) == alpha), None)
    if iv is not None and score is not None and np.isfinite(score[0]):
        qs = np.inf if iv["q"] == "inf" else float(iv["q"])
        low, high = saved.get("score_range") or (None, None)
        lo, hi = score_intervals(np.array([score[0]]), qs, low, high)[0]
        out["interval"] = (float(lo), float(hi), tm.target.get("score") or "score")
    return out


def headline(p: np.ndarray, names: list[str], kind: str, pos, positive_name: str | None, score,
             score_name: str | None, ranges: list | None) -> dict[str, Any]:
    """The estimate in one line that says what the distribution says: one class when it holds
    most of the probability, two adjacent severities when together they do, otherwise that no
    class stands out; the positive outcome's probability; and the predicted score, with a
    remark when it falls in another class's range of training scores than the classes named."""
    order = np.argsort(-p)
    top = int(order[0])
    named = [top]
    if p[top] >= 0.6:
        text = f"most likely {names[top]} ({p[top]:.0%})"
    else:
        pair = max((j for j in (top - 1, top + 1) if 0 <= j < len(p)), key=lambda j: p[j], default=None)
        if kind == "ordinal" and pair is not None and p[top] + p[pair] >= 0.6:
            lo, hi = sorted((top, pair))
            named = [lo, hi]
            text = (f"between {names[lo]} and {names[hi]} ({p[lo] + p[hi]:.0%} together; {names[top]} "
                    f"{p[top]:.0%})")
        else:
            second = int(order[1])
            text = (f"no class stands out: {names[top]} {p[top]:.0%}, {names[second]} {p[second]:.0%}, "
                    f"the others {1 - p[top] - p[second]:.0%}")
    parts = [text]
    if pos is not None:
        parts.append(f"{pos[0]:.0%} probability of {positive_name or 'the positive outcome'}")
    remark = None
    if score is not None:
        parts.append(f"predicted {score_name or 'score'} {score[0]:.1f}")
        where = score_class(score[0], ranges) if ranges else None
        if where is not None and where not in named:
            remark = (f"The score head and the class head disagree: a {score_name or 'score'} of {score[0]:.1f} lies "
                      f"in the range of {names[where]} in the training data, while the class probabilities favour "
                      f"{' / '.join(names[j] for j in named)}.")
    return {"text": "; ".join(parts), "remark": remark}


def score_class(value: float, ranges: list) -> int | None:
    """The class whose training range of scores holds `value` (the nearest when none does)."""
    best, gap = None, np.inf
    for c, r in enumerate(ranges):
        if r is None:
            continue
        d = 0.0 if r[0] <= value <= r[1] else min(abs(value - r[0]), abs(value - r[1]))
        if d < gap:
            best, gap = c, d
    return best


def _recorded(tm: TargetModel, labels: pd.DataFrame, sid: str, names: list[str]) -> str | None:
    row = labels.loc[labels.index.astype(str) == sid]
    if row.empty:
        return None
    row = row.iloc[0]
    parts = []
    label = tm.target.get("label")
    classes = tm.target.get("classes") or [str(j) for j in range(len(names))]
    if label in row and pd.notna(row[label]):
        v = row[label]
        value = str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)
        parts.append(names[classes.index(value)] if value in classes else value)
    score = tm.target.get("score")
    if score and score in row and pd.notna(row[score]):
        parts.append(f"{score} {row[score]:g}")
    return "; ".join(parts) or None


def _drop_effects(run: Run | None, target: str) -> dict[str, tuple[float, float]]:
    """Per modality, the evaluation's weighted F1 with every modality and without this one."""
    if run is None:
        return {}
    mets = run.summary.get("targets", {}).get(target, {}).get("metrics", {})
    full = mets.get("model", {}).get("f1_weighted", {}).get("mean")
    return {name[5:]: (full, stats["f1_weighted"]["mean"]) for name, stats in mets.items()
            if name.startswith("drop:") and full is not None and "f1_weighted" in stats}


def _evidence(tm, blocks, mods, shares, feats, i, top, saved_top, drops, n_top):
    """Per modality: its contribution to the fused decision for the headline's class, its share
    of all modalities' contributions, and the features behind it on the same scale (the shown
    features, the embedding dimensions together and the remaining features add up to the
    modality's contribution). Returns (rows, the class explained, a note when that class is
    not the one the headline shows)."""
    names = tm.class_names
    exact = feats is not None and all(feats.get(m) is not None for m in mods)
    cls, note = top, None
    if not exact and saved_top != top:
        cls = saved_top
        note = (f"The explanation is of the saved model's decision for this participant ({names[saved_top]}), "
                f"not of the held-out estimate above ({names[top]}).")
    inputs = tm.manifest.get("inputs", {})
    cols = tm.model.columns or {}
    rows = []
    for j, m in enumerate(mods):
        has = bool(available(blocks[m])[i])
        sets = ", ".join(f"{r['features']} ({r['extractor']['name']})" for r in inputs.get(m, []))
        row: dict[str, Any] = {"name": m, "present": has, "what": MODALITY_WORDS.get(m, m), "sets": sets,
                               "absence": None, "contribution": None, "items": [], "opaque": None, "rest": None}
        if has:
            C = feats.get(m) if feats is not None else None
            if exact and C is not None and not np.isnan(C[i]).all():
                row["contribution"] = float(np.nansum(C[i, :, cls]))
                row.update(_features(tm, blocks[m], C[i, :, cls], i, cols.get(m), tm.reference.get(m), n_top))
            elif shares is not None and np.isfinite(shares[i, j]):
                row["contribution"] = float(shares[i, j])
        else:
            row["absence"] = ("absent for this session: the estimate rests on the other modalities, with the fusion "
                              "weights fitted for that subset")
            if m in drops:
                full, without = drops[m]
                row["absence"] += (f"; in the evaluation, leaving {m} out changed weighted F1 from {full:.2f} to "
                                   f"{without:.2f}")
        rows.append(row)
    total = sum(abs(r["contribution"]) for r in rows if r["contribution"] is not None)
    for r in rows:
        if r["contribution"] is not None and total > 0:
            r["share"] = abs(r["contribution"]) / total
            r["direction"] = "towards" if r["contribution"] >= 0 else "against"
    return rows, names[cls], note


def _features(tm, X, contrib, i, columns, ref, top) -> dict[str, Any]:
    """The features with the largest contributions (embedding dimensions, which mean something
    only together, summed as one row; the remaining features as another), each with its value
    when the value has a plain meaning and where it lies in the training cohort."""
    names = columns or [f"{j}" for j in range(len(contrib))]
    described = [describe(n) for n in names]
    opaque = np.array([not d.interpretable for d in described])
    contrib = np.nan_to_num(contrib)
    items = []
    for j in np.argsort(-np.abs(np.where(opaque, 0, contrib)))[:top]:
        if opaque[j] or abs(contrib[j]) < 5e-4:  # below the 3 decimals shown: part of "the other features"
            continue
        value = float(X[i, j])
        pct = percentile_of(value, ref[:, j]) if ref is not None else float("nan")
        items.append({"label": described[j].label, "column": names[j], "family": described[j].family,
                      "value": value if described[j].raw_value else None, "percentile": pct,
                      "contribution": float(contrib[j])})
    shown = sum(f["contribution"] for f in items)
    out: dict[str, Any] = {"items": items, "opaque": None}
    if opaque.any():
        fam = described[int(np.flatnonzero(opaque)[0])].family
        out["opaque"] = {"n": int(opaque.sum()), "total": float(contrib[opaque].sum()), "family": fam}
        shown += out["opaque"]["total"]
    n_rest = int((~opaque).sum()) - len(items)
    out["rest"] = {"n": n_rest, "total": float(contrib.sum() - shown)} if n_rest > 0 else None
    return out


def _turns(tm, blocks, turns, i, sid, dataset, provenance, hide_text, top) -> tuple[list[dict[str, Any]], str | None]:
    seq = [m for m in turns if isinstance(blocks[m], SequenceBlock) and turns[m].ndim == 2]
    if not seq:
        return [], None
    first = blocks[seq[0]]
    T = first.values.shape[1]
    total = np.zeros(T)
    parts = {}
    for m in seq:
        a = np.nan_to_num(turns[m][i])
        total += a
        parts[m] = a
    valid = np.flatnonzero(np.isfinite(first.starts[i]))
    texts, note = [], None
    if not hide_text and dataset is not None:
        recipe = next(iter(tm.manifest.get("inputs", {}).get(seq[0], [])), {})
        texts, note = turn_texts(dataset, sid, recipe, provenance)
    out = []
    denom = np.abs(total[valid]).sum() or 1.0
    for t in valid[np.argsort(-np.abs(total[valid]))][:top]:
        start, end = float(first.starts[i, t]), float(first.ends[i, t])
        words = None
        if texts:
            near = min(texts, key=lambda s, st=start: abs(s[0] - st))
            words = near[2] if abs(near[0] - start) < 0.5 else None
        out.append({"index": int(t) + 1, "start": start, "end": end, "attribution": float(total[t]),
                    "share": float(abs(total[t]) / denom), "text": words,
                    "by_modality": {m: float(parts[m][t]) for m in seq}})
    return out, note


# --- cohort -------------------------------------------------------------------------------------

def cohort(run: Run, targets: Mapping[str, TargetModel], labels: pd.DataFrame | None,
           subgroups: Sequence[str] = (), n_boot: int = 200, seed: int = 0,
           codebook: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The cohort report's content for every target the run evaluated (and the model saved)."""
    from fusion.evaluation import plots

    s = run.summary
    out: dict[str, Any] = {"targets": {}, "dataset": s.get("dataset"), "model": s.get("model"),
                           "modalities": s.get("modalities"), "cv": s.get("cv", {}), "notes": s.get("notes", []),
                           "warnings": s.get("warnings", []), "feature_sets": s.get("feature_sets", {}),
                           "git": s.get("git", {}), "run_id": run.run_id, "tracking_uri": run.tracking_uri,
                           "run_folder": str(run.folder)}
    for tname, ts in s.get("targets", {}).items():
        if targets and tname not in targets:
            continue
        tm = targets.get(tname)
        names = tm.class_names if tm else ts.get("classes") or [str(j) for j in range(ts["n_classes"])]
        if len(names) != ts["n_classes"]:
            raise ReportError(f"target {tname!r}: the model folder {tm.folder if tm else '?'} has {len(names)} "
                              f"classes, the run {run.folder} evaluated {ts['n_classes']}: not the same model")
        preds = run.predictions(tname, len(names))
        t: dict[str, Any] = {"name": tname, "label": ts.get("label"), "classes": names,
                             "n": ts.get("n_samples"), "n_subjects": ts.get("n_subjects"),
                             "class_counts": list(zip(names, ts.get("class_counts", []), strict=False)),
                             "availability": ts.get("modality_available", {}),
                             "positive_name": (tm.target.get("positive_name") if tm else None)}
        mets = ts.get("metrics", {})
        chance = ts.get("chance", {})
        t["metrics"] = [(METRIC_NAMES.get(k, k), v, chance.get(k, float("nan")))
                        for k, v in mets.get("model", {}).items() if isinstance(v, dict) and "mean" in v]
        t["regression"] = [(METRIC_NAMES.get(k, k), v) for k, v in mets.get("regression", {}).items()]
        t["uncalibrated_ece"] = mets.get("uncalibrated", {}).get("ece")
        t["conformal"] = _conformal_rows(ts.get("conformal"), tm)
        t["confusion"] = ts.get("confusion")
        t["adjacent"] = _adjacent_share(ts.get("confusion")) if ts.get("kind") == "ordinal" else None
        t["drops"] = [(name[5:], v["f1_weighted"]) for name, v in mets.items()
                      if name.startswith("drop:") and "f1_weighted" in v]
        if preds is not None:
            y = preds["y"].to_numpy(int)
            P = _repeats(preds, len(names))
            t["reliability"] = figure_uri(plots.reliability_figure(f"{tname}: reliability (out-of-fold)", y,
                                                                   {"calibrated model": P}))
            t["subgroups"] = _subgroups(preds, P, labels, subgroups, ts.get("kind", "ordinal"),
                                        tm.target.get("positive_from") if tm else None, n_boot, seed)
            for row in t["subgroups"]:
                row["value"] = decode(dict(codebook or {}), row["column"], row["value"])
        dc = ts.get("decision_curve")
        if dc:
            t["decision"] = figure_uri(plots.decision_figure(f"{tname}: decision curve", dc))
            t["decision_reading"] = _decision_reading(dc)
        t.setdefault("reliability", None)
        t.setdefault("subgroups", [])
        t.setdefault("decision", None)
        t.setdefault("decision_reading", None)
        t["attr_features"] = t["attr_families"] = None
        t["attr_modalities"] = _table_rows(run.table(f"{tname}_attributions_modalities"))
        families = run.table(f"{tname}_attributions_families")
        if families is not None and "n_features" in families:
            t["attr_families"] = families.head(8).to_dict("records")
        feats = run.table(f"{tname}_attributions_features")
        if feats is not None:
            if "interpretable" in feats:  # embedding dimensions mean something only together (families above)
                feats = feats[feats["interpretable"].astype(bool)]
            feats = feats.head(10).copy()
            feats["plain"] = [describe(f).label for f in feats["feature"]]
            t["attr_features"] = feats.to_dict("records")
        out["targets"][tname] = t
    return out


def _conformal_rows(conformal: Mapping[str, Any] | None, tm: TargetModel | None) -> dict[str, Any] | None:
    """The evaluation's conformal coverage and set size per level and score, overall and per
    group, and the score intervals', for the cohort report."""
    if not conformal or not conformal.get("sets"):
        return None
    rows = []
    for alpha, by_score in conformal["sets"].items():
        for score, e in by_score.items():
            rows.append({"alpha": alpha, "level": f"{1 - float(alpha):.0%}", "score": score, "group": "all",
                         "n": e["n"], "coverage": e["coverage"], "size": e["size"], "singleton": e["singleton"]})
            for g, ge in e.get("per_group", {}).items():
                rows.append({"alpha": alpha, "level": f"{1 - float(alpha):.0%}", "score": score,
                             "group": f"{conformal.get('group_by')} = {g}", "n": ge["n"], "coverage": ge["coverage"],
                             "size": ge["size"], "singleton": ge["singleton"]})
    intervals = [{"level": f"{1 - float(a):.0%}", **e} for a, e in conformal.get("intervals", {}).items()]
    return {"rows": rows, "intervals": intervals, "n_classes": conformal.get("n_classes"),
            "source": "; ".join(conformal.get("source", [])), "notes": conformal.get("notes", []),
            "score_name": (tm.target.get("score") if tm else None) or "score"}


def _repeats(preds: pd.DataFrame, k: int) -> np.ndarray:
    reps = sorted({int(c.rsplit("repeat", 1)[1]) for c in preds.columns if c.startswith("p0_repeat")})
    return np.stack([preds[[f"p{c}_repeat{r}" for c in range(k)]].to_numpy(float) for r in reps])


def _adjacent_share(conf) -> float | None:
    if conf is None:
        return None
    M = np.asarray(conf, float)
    off = M.sum() - np.trace(M)
    if off == 0:
        return None
    adj = sum(M[i, j] for i in range(len(M)) for j in range(len(M)) if abs(i - j) == 1)
    return float(adj / off)


def _table_rows(df: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if df is None:
        return None
    column = next((c for c in ("mean_abs_contribution", "mean_abs_share_of_margin") if c in df), None)
    if column is not None:
        total = df[column].sum() or 1.0
        df = df.assign(value=df[column], percent=df[column] / total)
    return df.to_dict("records")


def _subgroups(preds, P, labels, columns, kind, pos, n_boot, seed) -> list[dict[str, Any]]:
    """Per value of each grouping column (gender by default): n, weighted F1 and balanced
    accuracy (mean over repeats, subject-bootstrap CI), and for a target with a positive
    outcome the AUC, the mean predicted and the observed rate of it."""
    from fusion.evaluation.metrics import bootstrap_intervals, f1_scores, roc_auc

    if labels is None:
        return []
    lab = labels.copy()
    lab.index = lab.index.astype(str)
    cols = list(columns) or [c for c in ("Gender", "gender", "sex", "Sex") if c in lab.columns][:1]
    missing = [c for c in cols if c not in lab.columns]
    if missing:
        raise ReportError(f"subgroup column(s) {missing} are not in the labels (columns: {list(lab.columns)})")
    y = preds["y"].to_numpy(int)
    k = P.shape[2]
    groups = preds["subject_id"].astype(str).to_numpy()
    scored = ~np.isnan(P).any(2).any(0)
    # the classes the run named (`pred_repeat*`: by the model's decision rule), one-hot beside the
    # probabilities; a run written before those columns: the most probable class
    reps = sorted({int(c.rsplit("repeat", 1)[1]) for c in preds.columns if c.startswith("p0_repeat")})
    if all(f"pred_repeat{r}" in preds for r in reps):
        named = np.stack([preds[f"pred_repeat{r}"].to_numpy(int) for r in reps])
    else:
        named = np.nan_to_num(P, nan=-1).argmax(2)
    PL = np.concatenate([P, np.eye(k)[np.clip(named, 0, k - 1)]], axis=2)

    def metrics(yy, pp):
        pred = pp[:, k:].argmax(1)  # the run's named classes, one-hot after the probabilities
        recalls = [(pred[yy == c] == c).mean() for c in range(k) if (yy == c).any()]
        m = {"f1_weighted": f1_scores(yy, pred, k)[0], "balanced_accuracy": float(np.mean(recalls))}
        if pos is not None:
            m["auc"] = roc_auc(yy >= pos, pp[:, pos:k].sum(1))
        return m

    rows = []
    for col in cols:
        values = lab[col].reindex(preds["sample_id"].astype(str)).to_numpy()
        for v in pd.unique(values[pd.notna(values)]):
            idx = np.flatnonzero((values == v) & scored)
            if len(idx) < 2:
                continue
            with warnings.catch_warnings():  # a subgroup with one class has no AUC (NaN, said as "–")
                warnings.simplefilter("ignore", RuntimeWarning)
                per = [metrics(y[idx], PL[r, idx]) for r in range(len(P))]
                ci = bootstrap_intervals(metrics, y[idx], PL[:, idx], groups[idx], n_boot, seed)
                means = {name: float(np.nanmean([p[name] for p in per])) for name in per[0]}
            row = {"column": col, "value": v, "n": int(len(idx)),
                   **{name: (means[name], *ci.get(name, (np.nan, np.nan))) for name in per[0]}}
            if pos is not None:
                row["predicted_rate"] = float(P[:, idx, pos:].sum(2).mean())
                row["observed_rate"] = float((y[idx] >= pos).mean())
            rows.append(row)
    return rows


def _decision_reading(dc: Mapping[str, Any]) -> dict[str, Any]:
    """Thresholds where deciding with the model beats both referring everyone and no one."""
    t = np.asarray(dc["threshold"], float)
    model, everyone = np.asarray(dc["model"], float), np.asarray(dc["treat_all"], float)
    better = model > np.maximum(everyone, 0) + 1e-9
    spans, start = [], None
    for j, b in enumerate(better):
        if b and start is None:
            start = j
        if (not b or j == len(t) - 1) and start is not None:
            end = j if b else j - 1
            spans.append((float(t[start]), float(t[end])))
            start = None
    marks = []
    for th in (0.1, 0.2, 0.3, 0.5):
        j = int(np.argmin(np.abs(t - th)))
        if abs(t[j] - th) < 0.03:
            marks.append({"threshold": float(t[j]), "model": float(model[j]), "all": float(everyone[j]),
                          "harm_ratio": (1 - t[j]) / t[j]})
    return {"spans": spans, "marks": marks}
