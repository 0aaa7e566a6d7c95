"""Clinician-facing reports (`fusion report`): participant and cohort reports from a model
trained on the demo corpus, rendered in headless Chromium (page text, no request leaving the
page, screenshot, PDF pages); the intervals, glossary and bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.cli import main
from fusion.report.browser import find_chromium

ROOT = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(
    find_chromium() is None or shutil.which("pdftotext") is None,
    reason="no Chromium or no pdftotext here (apt-get install chromium poppler-utils; .ci/run installs both)")


def train(corpus, out: Path, config: str, *extra: str) -> dict:
    root, store = corpus
    assert main(["train", "--config", str(ROOT / config), "--set", f"extract.dataset.root={root}",
                 "--set", f"extract.store={store}", "--set", "cv.n_splits=2", "--set", "cv.inner_splits=2",
                 "--set", "evaluation.n_bootstrap=50", "--set", "evaluation.plots=false",
                 "--set", f"tracking.uri=sqlite:///{out / 'ml.db'}", "--set", f"tracking.artifacts={out / 'art'}",
                 "--set", f"output_dir={out / 'out'}", "--json", str(out / "s.json"), *extra]) == 0
    return json.loads((out / "s.json").read_text())


@pytest.fixture(scope="module")
def severity_run(severity_corpus, tmp_path_factory):
    """The tri-modal severity model (late fusion) trained on 24 demo sessions, 2 repeats."""
    out = tmp_path_factory.mktemp("report_run")
    s = train(severity_corpus, out, "configs/train/severity_late_fusion.yaml", "--set", "cv.n_repeats=2",
              "--set", "evaluation.ablation=false", "--set", "evaluation.noise_levels=[1.0]")
    return s, severity_corpus


def pages(pdf: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [p for p in text.split("\f") if p.strip()]


def filled_height(pdf: Path, page: int = 1) -> float:
    """How far down a PDF page (rendered by pdftoppm) its last non-white row lies, as a share of
    the page's height."""
    from PIL import Image

    prefix = pdf.with_name(pdf.stem + "_page")
    subprocess.run(["pdftoppm", "-r", "40", "-f", str(page), "-l", str(page), "-png", str(pdf), str(prefix)],
                   check=True, capture_output=True)
    (png,) = pdf.parent.glob(prefix.name + "*.png")
    grey = np.asarray(Image.open(png).convert("L"))
    rows = np.flatnonzero((grey < 200).any(1))
    return float(rows[-1] + 1) / grey.shape[0] if len(rows) else 0.0


def held_out_probabilities(run_dir: Path, target: str, sid: str, k: int) -> np.ndarray:
    preds = pd.read_csv(run_dir / f"{target}_predictions.csv", dtype={"sample_id": str}).set_index("sample_id")
    reps = sorted({c.rsplit("repeat", 1)[1] for c in preds.columns if c.startswith("p0_repeat")})
    return np.array([[preds.loc[sid, f"p{c}_repeat{r}"] for c in range(k)] for r in reps]).mean(0)


@pytest.mark.slow
@needs_chromium
def test_participant_and_cohort_reports_in_a_real_browser(severity_run, tmp_path, capsys):
    from fusion.report.browser import render

    s, _ = severity_run
    run_dir = Path(s["outputs"]["dir"])
    sid = pd.read_csv(run_dir / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[3]
    out = tmp_path / "reports"
    assert main(["report", "--run", str(run_dir), "--participant", sid, "--cohort", "--out", str(out),
                 "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert not r["failed"] and not r["warnings"]
    html = (out / f"participant_{sid}.html").read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html

    page = render(out / f"participant_{sid}.html", pdf=False, screenshot=True)
    assert page.requests == [(out / f"participant_{sid}.html").resolve().as_uri()]  # nothing else asked for
    assert not page.external_requests
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 20_000
    text = page.text
    assert f"Participant {sid}" in text and "Research use only" in text and "not a diagnosis" in text
    # the probabilities shown are the evaluation's held-out ones for this participant (in the training data)
    for target, k in (("depression", 5), ("ptsd", 3)):
        for p in held_out_probabilities(run_dir, target, sid, k):
            assert f"{100 * p:.1f} %" in text, (target, p)
    assert "held-out estimate" in text and "Range over 2 repeats" in text and "not a confidence interval" in text
    assert "Estimate: " in text and "Recorded questionnaire result: " in text
    names = ["none (0-4)", "mild (5-9)", "moderate (10-14)", "moderately severe (15-19)", "severe (20-24)"]
    assert all(n in text for n in names) and "high (> 40)" in text
    # each modality with its contribution and share, features in plain language against the cohort
    for m in ("text", "audio", "face"):
        assert f"\n{m}\n" in f"\n{text}\n"
    shares = [float(x) for x in re.findall(r"(\d+) % \((?:towards|against)\)", text)]
    assert len(shares) >= 6 and all(0 <= x <= 100 for x in shares)
    assert "% of the cohort" in text or "in the cohort" in text
    assert "dimensions together" in text and "words (embedding) dimensions" not in text
    assert "Model card and intended use" in text and "Known failure modes" in text
    assert "Gender: female = " in text  # coded labels decoded (DAIC-WOZ: 0 female, 1 male)
    # the conformal set and score interval beside the probabilities, with what the guarantee means
    assert re.search(r"With 90% confidence: \S.*; PHQ8_Score \d+–\d+\n", text), text
    assert "exchangeable with the training cohort" in text and "not about this participant" in text

    # the PDF: the estimates and the evidence flow on from page 1 (no half-empty first page), the
    # model card from a new page; a table's header row is repeated on a page it continues on
    pp = pages(out / f"participant_{sid}.pdf")
    assert f"Participant {sid}" in pp[0] and "Research use only" in pp[0]
    assert "What the estimate rests on" in pp[0] + pp[1]  # right after the estimates, not on a page of its own
    starts = [p.strip().splitlines()[0].strip() for p in pp]
    assert "Model card and intended use" in starts
    assert filled_height(out / f"participant_{sid}.pdf") > 0.8  # the first page image is not half empty

    cohort = render(out / "cohort.html", pdf=False)
    assert not cohort.external_requests
    c = cohort.text
    f1 = s["targets"]["depression"]["metrics"]["model"]["f1_weighted"]
    assert f"{f1['mean']:.2f} ± {f1['sd']:.2f} [{f1['ci_low']:.2f}, {f1['ci_high']:.2f}]" in c
    assert "Reading the decision curve" in c and "Gender = " in c and "Provenance" in c
    assert s["run_id"] in c and "Research use only" in c
    assert "this person" not in c and "performed on a research cohort" in c  # the cohort's own disclaimer
    chance = s["targets"]["depression"]["chance"]["f1_weighted"]
    assert "Chance level" in c and f"{chance:.2f}" in c  # every metric beside its chance level
    assert "Conformal prediction sets" in c and "Gender = female" in c and "PHQ8_Score interval" in c
    cohort_html = (out / "cohort.html").read_text()
    assert cohort_html.count('src="data:image/png;base64,') >= 4  # reliability + decision curve per target
    cp = pages(out / "cohort.pdf")
    starts = [p.strip().splitlines()[0].strip() for p in cp]
    for title in ("Calibration and decision curves", "Subgroups and attributions", "Model card and intended use"):
        assert title in starts, starts
    # tracked in the MLflow run
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=s["tracking_uri"])
    arts = {a.path for a in client.list_artifacts(s["run_id"], "reports")}
    assert f"reports/participant_{sid}.pdf" in arts and "reports/cohort.html" in arts


@pytest.mark.slow
def test_the_run_carries_its_conformal_sets_everywhere_a_reader_looks(severity_run):
    """The summary, the printed report, the per-sample CSV, the figure, MLflow and the saved
    model (the thresholds a report applies) all carry the conformal sets."""
    import mlflow

    s, _ = severity_run
    run_dir = Path(s["outputs"]["dir"])
    for target, k in (("depression", 5), ("ptsd", 3)):
        c = s["targets"][target]["conformal"]
        assert c["group_by"] == "Gender" and c["scores"] == ["lac", "aps", "ordinal"] and c["n_classes"] == k
        e = c["sets"]["0.1"]["ordinal"]
        assert 0 <= e["coverage"]["mean"] <= 1 and 1 <= e["size"]["mean"] <= k and set(e["per_group"]) == {
            "female", "male"}
        table = pd.read_csv(run_dir / f"{target}_conformal.csv", dtype={"sample_id": str})
        assert {"set_ordinal_alpha0.1", "set_lac_alpha0.2", "Gender"} <= set(table.columns)
        man = json.loads((run_dir / "model" / target / "manifest.json").read_text())["conformal"]
        assert man["report_alpha"] == 0.1 and man["codes"] == {"0": "female", "1": "male"}
        assert {(t["score"], t["alpha"]) for t in man["sets"]} == {(sc, a) for sc in ("lac", "aps", "ordinal")
                                                                   for a in (0.1, 0.2)}
    assert s["targets"]["depression"]["conformal"]["intervals"]["0.1"]["width"]["mean"] > 0
    metrics = mlflow.tracking.MlflowClient(tracking_uri=s["tracking_uri"]).get_run(s["run_id"]).data.metrics
    assert "depression.conformal.ordinal.alpha0.1.coverage" in metrics
    assert "depression.conformal.interval.alpha0.1.width" in metrics


def report_inputs(run_dir: Path):
    """The severity run's saved targets and its data, as `fusion report` loads them."""
    from fusion.config.load import load_config
    from fusion.config.schema import TrainConfig
    from fusion.data.blocks import load_model_data
    from fusion.report.sources import load_targets, resolve_run

    data = load_model_data(load_config(TrainConfig, run_dir / "config.yaml", []))
    return load_targets(run_dir / "model"), data, resolve_run(run_dir)


@pytest.mark.slow
def test_modality_contributions_are_the_sums_of_their_features_on_every_target(severity_run):
    """One scale for modalities and features: in every participant's report, for every target
    of the severity model, a modality's shown features, its embedding dimensions and its other
    features add up to its contribution, which is the model's own decomposition of the fused
    log-odds of the class explained; the shares are those contributions normalised."""
    from fusion.report.content import participants

    s, _ = severity_run
    run_dir = Path(s["outputs"]["dir"])
    targets, data, run = report_inputs(run_dir)
    ids = list(data.labels.index.astype(str))[:6]
    contents, failed = participants(targets, data.blocks, data.labels, ids, run=run, n_draws=5)
    assert not failed and set(targets) == {"depression", "ptsd"}
    rows = [data.labels.index.astype(str).get_loc(i) for i in ids]
    for tname, tm in targets.items():
        feats = tm.model.feature_contributions({m: b[rows] for m, b in data.blocks.items()})
        for j, sid in enumerate(ids):
            t = contents[sid]["targets"][tname]
            cls = tm.class_names.index(t["explained"])
            present = [m for m in t["modalities"] if m["present"]]
            assert present and sum(m["share"] for m in present) == pytest.approx(1.0)
            for m in present:
                parts = sum(f["contribution"] for f in m["items"]) + (m["opaque"] or {"total": 0})["total"] + \
                    (m["rest"] or {"total": 0})["total"]
                assert parts == pytest.approx(m["contribution"], abs=1e-9), (tname, sid, m["name"])
                assert m["contribution"] == pytest.approx(float(np.nansum(feats[m["name"]][j, :, cls])), abs=1e-9)
                assert (m["contribution"] >= 0) == (m["direction"] == "towards")


@needs_chromium
@pytest.mark.slow
def test_a_table_that_continues_on_the_next_page_repeats_its_header(severity_run, tmp_path):
    from fusion.report import render
    from fusion.report.browser import Browser
    from fusion.report.build import model_card
    from fusion.report.content import participants

    s, _ = severity_run
    targets, data, run = report_inputs(Path(s["outputs"]["dir"]))
    sid = str(data.labels.index[0])
    contents, _ = participants(targets, data.blocks, data.labels, [sid], run=run, n_draws=5, top_features=40)
    html = render.participant_html(contents[sid], model_card(targets, run), warnings=[], run_id=None,
                                   hide_text=False)
    (tmp_path / "long.html").write_text(html)
    with Browser() as browser:
        (tmp_path / "long.pdf").write_bytes(browser.render(tmp_path / "long.html", pdf=True).pdf)
    header = re.compile(r"Modality\s+Feature\s+Value\s+Against the(\s+training)?\s+Contribution")
    with_header = [i for i, page in enumerate(pages(tmp_path / "long.pdf")) if header.search(page)]
    assert len(with_header) >= 3, with_header  # 2 targets × 40+ rows: the table spans pages, each with its header


def test_the_headline_says_what_the_distribution_says():
    from fusion.report.content import headline

    names = ["none", "mild", "moderate", "moderately severe", "severe"]
    ranges = [[0, 4], [5, 9], [10, 14], [15, 19], [20, 24]]
    h = headline(np.array([0.05, 0.40, 0.45, 0.07, 0.03]), names, "ordinal", (0.55, np.nan, np.nan),
                 "moderate or worse", (11.9, np.nan, np.nan), "PHQ8_Score", ranges)
    assert h["text"].startswith("between mild and moderate (85% together; moderate 45%)")
    assert "55% probability of moderate or worse" in h["text"] and h["remark"] is None
    h = headline(np.array([0.05, 0.52, 0.30, 0.10, 0.03]), names, "ordinal", None, None, (16.2, 15, 17),
                 "PHQ8_Score", ranges)
    assert h["text"].startswith("between mild and moderate") and "moderately severe" in h["remark"]
    assert "disagree" in h["remark"]
    assert headline(np.array([0.8, 0.1, 0.1]), names[:3], "ordinal", None, None, None, None, None)["text"] == \
        "most likely none (80%)"
    nominal = headline(np.array([0.35, 0.33, 0.32]), ["angry", "sad", "happy"], "nominal", None, None, None, None,
                       None)
    assert nominal["text"].startswith("no class stands out: angry 35%, sad 33%")


@pytest.mark.slow
def test_a_new_participant_gets_the_saved_model_with_a_bootstrap_interval(severity_run, tmp_path):
    """A participant the model never saw: the saved model's estimate, with the 90 % bootstrap
    interval of its fusion layer (here simulated by removing them from the training record)."""
    from fusion.report.build import ReportRequest, make_reports

    s, _ = severity_run
    run_dir = Path(s["outputs"]["dir"])
    model = tmp_path / "model"
    shutil.copytree(run_dir / "model", model)
    sid = pd.read_csv(run_dir / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    for target in ("depression", "ptsd"):
        path = model / target / "manifest.json"
        man = json.loads(path.read_text())
        man["training"]["sample_ids"].remove(sid)
        path.write_text(json.dumps(man))
    res = make_reports(ReportRequest(run=str(run_dir), model=str(model), participants=[sid], out=str(tmp_path / "o"),
                                     pdf=False, track=False, n_draws=100))
    html = (tmp_path / "o" / f"participant_{sid}.html").read_text()
    assert res.participants == [sid]
    assert "90% bootstrap interval of the fusion layer" in html and "held-out estimate" not in html
    assert "predicted PHQ8_Score" in html  # the saved score model


def test_bootstrap_of_the_fusion_layer():
    from fusion.models.late_fusion import LateCalibratedFusion
    from fusion.models.stacking import LogLinearStacker
    from fusion.models.targets import Targets

    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 3, n)
    blocks = {"a": rng.normal(size=(n, 4)) + y[:, None] * 0.8, "b": rng.normal(size=(n, 3)) + y[:, None] * 0.3}
    blocks["b"][:10] = np.nan
    inner = [(np.arange(n)[np.arange(n) % 2 == f], np.arange(n)[np.arange(n) % 2 != f]) for f in (0, 1)]
    model = LateCalibratedFusion(learner={"name": "logreg"}).fit(blocks, Targets.classes(y, 3), inner=inner)
    draws = model.bootstrap_predictions(blocks, n_draws=50, seed=1)
    assert draws.shape == (50, n, 3)
    np.testing.assert_allclose(draws.sum(2), 1.0, atol=1e-9)
    p = model.predict_proba(blocks)
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    assert ((p >= lo - 0.02) & (p <= hi + 0.02)).mean() > 0.95
    assert (hi - lo).mean() > 1e-3  # resampling the fusion layer's data moves the estimate
    # the rows lacking `b` are predicted by the fusion layer of `a` alone, in every draw
    np.testing.assert_allclose(np.median(draws[:, :10], 0), model.predict_proba(blocks, ["a"])[:10], atol=0.1)
    # the warm-started analytic-gradient fit reaches the plain fit's optimum
    outs = [model.oof_[m] for m in model.modalities]
    plain = LogLinearStacker(0.01).fit(outs, y)
    warm = LogLinearStacker(0.01).fit(outs, y, start=model.stacker(model.modalities))
    np.testing.assert_allclose(warm.weights_, plain.weights_, atol=1e-3)
    np.testing.assert_allclose(warm.bias_, plain.bias_, atol=1e-3)


def test_feature_names_in_plain_language():
    from features.glossary import describe, mel_centre_hz

    assert describe("face_session/AU04_r__mean").label == "AU04 brow lowerer intensity, mean"
    assert describe("face_turn/AU12_r__mean__std").label == "AU12 lip corner puller (smile) intensity, mean; SD over turns"
    assert describe("face_session/gaze_angle_x__std").family == "gaze"
    assert describe("face_session/pose_Rx__mean").label.startswith("head pitch")
    assert describe("egemaps_session/F0semitoneFrom27.5Hz_sma3nz_amean").label == "pitch (F0, semitones), mean"
    assert describe("egemaps_session/slopeUV0-500_sma3nz_amean").label == "spectral slope 0-500 Hz in unvoiced stretches, mean"
    assert describe("egemaps_session/jitterLocal_sma3nz_stddevNorm").label.startswith("jitter")
    assert describe("egemaps_session/MeanUnvoicedSegmentLength").label.startswith("mean length of pauses")
    band = describe("logmel_session/logmel10_mean")
    assert band.family == "voice spectrum (log-Mel)" and f"{mel_centre_hz(10):,.0f} Hz" in band.label
    text = describe("text_session/mean_017")
    assert not text.interpretable and "dimension 17" in text.label
    unknown = describe("compare/audspec_lengthL1norm_sma_range")
    assert unknown.label == "audspec_lengthL1norm_sma_range" and not unknown.interpretable  # never a guess
    assert mel_centre_hz(0) < mel_centre_hz(63) < 8000


def test_percentile_against_the_training_cohort():
    from fusion.report.content import percentile_of

    q = np.percentile(np.arange(1000.0), np.arange(101))
    assert percentile_of(850.0, q) == pytest.approx(85.0, abs=0.2)
    assert percentile_of(-5.0, q) == 0.0 and percentile_of(2000.0, q) == 100.0
    flat = np.r_[np.zeros(60), np.linspace(0, 1, 41)]  # 60 % of the cohort at exactly 0
    assert percentile_of(0.0, flat) == pytest.approx(30.0, abs=1.0)
    assert np.isnan(percentile_of(float("nan"), q))


@pytest.mark.slow
def test_bad_input_gets_clear_messages(severity_run, tmp_path, capsys):
    from fusion.report.build import ReportRequest, make_reports
    from fusion.report.content import participants
    from fusion.report.sources import ReportError, load_targets

    s, corpus = severity_run
    run_dir = Path(s["outputs"]["dir"])
    # an unknown participant
    assert main(["report", "--run", str(run_dir), "--participant", "nobody", "--no-pdf", "--no-track",
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown participant(s) ['nobody']" in err and "not in the data" in err
    # nothing asked for
    assert main(["report", "--run", str(run_dir), "--no-pdf", "--out", str(tmp_path / "a")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    # a model folder missing a file
    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "model", broken)
    (broken / "depression" / "score" / "manifest.json").unlink()  # the PHQ-8 score model
    assert main(["report", "--run", str(run_dir), "--model", str(broken), "--participant", "x", "--no-pdf",
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "incomplete" in err and "score/manifest.json" in err
    (broken / "ptsd" / "reference.npz").unlink()
    with pytest.raises(ReportError, match="reference.npz"):
        load_targets(broken, ["ptsd"])
    # data whose feature hashes differ from the model's: a warning naming the feature set
    shifted = tmp_path / "shifted"
    shutil.copytree(run_dir / "model", shifted)
    for target in ("depression", "ptsd"):
        path = shifted / target / "manifest.json"
        man = json.loads(path.read_text())
        man["training"]["feature_sets"]["face_session"]["param_hash"] = "0" * 64
        path.write_text(json.dumps(man))
    sid = pd.read_csv(run_dir / "ptsd_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    res = make_reports(ReportRequest(run=str(run_dir), model=str(shifted), participants=[sid], pdf=False,
                                     track=False, out=str(tmp_path / "b"), n_draws=20))
    assert any("face_session" in w and "other settings" in w for w in res.warnings)
    assert "face_session" in (tmp_path / "b" / f"participant_{sid}.html").read_text()
    # a participant with no data in any modality: reported as such, the others kept
    targets = load_targets(run_dir / "model")
    from fusion.config.load import load_config
    from fusion.config.schema import TrainConfig
    from fusion.data.blocks import load_model_data

    data = load_model_data(load_config(TrainConfig, run_dir / "config.yaml", []))
    ids = list(data.labels.index.astype(str))
    blocks = {m: b.copy() for m, b in data.blocks.items()}
    for b in blocks.values():
        b[ids.index(ids[1])] = np.nan
    out, failed = participants(targets, blocks, data.labels, [ids[0], ids[1]], run=None, n_draws=10)
    assert list(out) == [ids[0]] and list(failed) == [ids[1]]
    assert "no data in any of the model's modalities (text, audio, face)" in failed[ids[1]]


@pytest.mark.slow
def test_a_cohort_report_without_the_runs_predictions_names_the_missing_file(severity_run, tmp_path, capsys):
    s, _ = severity_run
    run_dir = tmp_path / "run"
    shutil.copytree(Path(s["outputs"]["dir"]), run_dir)
    (run_dir / "ptsd_predictions.csv").unlink()
    assert main(["report", "--run", str(run_dir), "--cohort", "--no-pdf", "--no-track", "--out",
                 str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir / 'ptsd_predictions.csv'} is missing" in err and "No grouping column" not in err
    assert not (tmp_path / "c" / "cohort.html").exists()
    # a participant the model was trained on needs them too: no silent in-sample estimate
    sid = pd.read_csv(run_dir / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    assert main(["report", "--run", str(run_dir), "--participant", sid, "--no-pdf", "--no-track", "--out",
                 str(tmp_path / "c")]) == 2
    assert "ptsd_predictions.csv is missing" in capsys.readouterr().err


def tamper_cases(run_dir: Path, model: Path) -> list[tuple[str, object]]:
    """(name, edit) pairs: each edit damages one file of a copied run or model folder."""
    def edit_json(path: Path, change):
        def go():
            data = json.loads(path.read_text())
            change(data)
            path.write_text(json.dumps(data))
        return go

    def write(path: Path, text: str | bytes):
        return lambda: path.write_bytes(text if isinstance(text, bytes) else text.encode())

    man = model / "ptsd" / "manifest.json"
    return [
        ("metrics.json garbage", write(run_dir / "metrics.json", "{not json")),
        ("metrics.json a list", write(run_dir / "metrics.json", "[1, 2]")),
        ("metrics.json target not a mapping", edit_json(run_dir / "metrics.json",
                                                        lambda d: d["targets"].update(ptsd=3))),
        ("predictions without y", lambda: pd.read_csv(run_dir / "ptsd_predictions.csv").drop(columns="y").to_csv(
            run_dir / "ptsd_predictions.csv", index=False)),
        ("predictions y out of range", lambda: pd.read_csv(run_dir / "ptsd_predictions.csv").assign(y=9).to_csv(
            run_dir / "ptsd_predictions.csv", index=False)),
        ("predictions binary garbage", write(run_dir / "ptsd_predictions.csv", b"\x00\xff\xfe garbage")),
        ("manifest without state", edit_json(man, lambda d: d.pop("state"))),
        ("manifest state of the wrong type", edit_json(man, lambda d: d.update(state=[1, 2]))),
        ("manifest unknown model", edit_json(man, lambda d: d.update(model="nope"))),
        ("manifest columns cut", edit_json(man, lambda d: d["columns"].update(
            audio=d["columns"]["audio"][:3]))),
        ("manifest columns not a list", edit_json(man, lambda d: d["columns"].update(audio=5))),
        ("manifest n_classes changed", edit_json(man, lambda d: d.update(n_classes=7))),
        ("manifest reference outside", edit_json(man, lambda d: d["reference"].update(file="../../x.npz"))),
        ("reference garbage", write(model / "ptsd" / "reference.npz", b"garbage bytes, not a zip")),
        ("reference a pickle", write(model / "ptsd" / "reference.npz", b"\x80\x04\x95\x00")),
        ("reference wrong shape", lambda: np.savez(model / "ptsd" / "reference.npz", audio=np.zeros((3, 2)))),
    ]


@pytest.mark.slow
def test_tampered_run_and_model_folders_are_named_with_what_was_expected(severity_run, tmp_path, capsys):
    s, _ = severity_run
    source = Path(s["outputs"]["dir"])
    sid = pd.read_csv(source / "ptsd_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    n = len(tamper_cases(tmp_path, tmp_path))
    for i in range(n):
        run_dir = tmp_path / f"run{i}"
        shutil.copytree(source, run_dir)
        name, edit = tamper_cases(run_dir, run_dir / "model")[i]
        edit()
        code = main(["report", "--run", str(run_dir), "--participant", sid, "--cohort", "--target", "ptsd",
                     "--no-pdf", "--no-track", "--draws", "5", "--out", str(tmp_path / f"r{i}")])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert str(run_dir) in line, (name, line)  # the folder (and the file) named
        assert not re.match(r"error: [A-Za-z]+Error:", line) and "rerun with --debug" not in line, (name, line)
        assert "allow_pickle" not in line, (name, line)


@pytest.mark.slow
def test_sequence_model_report_shows_the_turns_with_captum_attributions(severity_corpus, tmp_path):
    """ATEI over turns: the report lists the turns with the largest Integrated-Gradients
    attributions, with what was said (or not, with --hide-text)."""
    root, store = severity_corpus
    assert main(["extract", "--config", str(ROOT / "configs/extract/demo_multimodal.yaml"),
                 "--set", f"dataset.root={root}", "--set", f"store={store}", "--set", "progress=false",
                 "--only", "egemaps_turn", "--only", "text_turn"]) == 0
    s = train(severity_corpus, tmp_path, "configs/train/atei.yaml", "--set", "cv.n_repeats=1",
              "--set", "evaluation.ablation=false", "--set", "model.params.max_epochs=3",
              "--set", "model.params.max_inner=1", "--set", "model.params.hidden=16")
    run_dir = Path(s["outputs"]["dir"])
    sid = pd.read_csv(run_dir / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    from fusion.report.build import ReportRequest, make_reports

    make_reports(ReportRequest(run=str(run_dir), participants=[sid], pdf=False, track=False, out=str(tmp_path / "t")))
    html = (tmp_path / "t" / f"participant_{sid}.html").read_text()
    assert "turns that contributed most" in html and "Integrated Gradients (Captum)" in html
    transcript = pd.read_csv(next((root / f"{sid}_P").glob("*TRANSCRIPT.csv")), sep="\t")
    said = [str(v) for v in transcript["value"]]
    assert sum(f"“{w}”" in html for w in said if len(w) > 3) >= 1  # excerpts are the participant's own words
    make_reports(ReportRequest(run=str(run_dir), participants=[sid], pdf=False, track=False, hide_text=True,
                               out=str(tmp_path / "h")))
    hidden = (tmp_path / "h" / f"participant_{sid}.html").read_text()
    assert "[hidden]" in hidden and not any(f"“{w}”" in hidden for w in said if len(w) > 3)
    # a transcript edited after extraction: its new words are not shown, and the report says why
    path = next((root / f"{sid}_P").glob("*TRANSCRIPT.csv"))
    original, stat = path.read_bytes(), path.stat()
    edited = transcript.copy()
    edited.loc[edited["speaker"] == "Participant", "value"] = "words written after the extraction"
    try:
        edited.to_csv(path, sep="\t", index=False)
        res = make_reports(ReportRequest(run=str(run_dir), participants=[sid], pdf=False, track=False,
                                         out=str(tmp_path / "e")))
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    page = (tmp_path / "e" / f"participant_{sid}.html").read_text()
    assert "words written after the extraction" not in page
    assert f"{path} is not the transcript the features of" in page and "edited since" in page
    assert any(str(path) in w and "edited since" in w for w in res.warnings)


def test_a_saved_decision_rule_names_its_class_beside_the_most_probable_one(severity_run, tmp_path):
    """A model saved with a decision rule: where the rule names another class than the most
    probable one, the participant report says which, and by which rule (offsets that force
    the first or the last class: at least one of the two differs from the most probable)."""
    from fusion.report.build import ReportRequest, make_reports
    from fusion.report.sources import load_targets

    s, _ = severity_run
    run_dir = Path(s["outputs"]["dir"])
    sid = pd.read_csv(run_dir / "depression_predictions.csv", dtype={"sample_id": str})["sample_id"].iloc[0]
    names = load_targets(run_dir / "model", ["depression"])["depression"].class_names
    shown = []
    for forced in (0, len(names) - 1):
        model = tmp_path / f"model{forced}"
        shutil.copytree(run_dir / "model", model)
        path = model / "depression" / "manifest.json"
        man = json.loads(path.read_text())
        offsets = [0.0] * len(names)
        offsets[forced] = 30.0
        man["decision"] = {"rule": "uar", "offsets": offsets}
        path.write_text(json.dumps(man))
        make_reports(ReportRequest(run=str(run_dir), model=str(model), participants=[sid], pdf=False, track=False,
                                   out=str(tmp_path / f"o{forced}"), n_draws=10, targets=["depression"]))
        html = (tmp_path / f"o{forced}" / f"participant_{sid}.html").read_text()
        if "decision rule (for uar)" in html:
            assert f"decision rule (for uar): <b>{names[forced]}</b>" in html
            shown.append(forced)
    assert shown  # the rule named another class for at least one of the two
    # a manifest whose rule is not one of the rules is refused, naming it
    man["decision"] = {"rule": "accuracy", "offsets": offsets}
    path.write_text(json.dumps(man))
    from fusion.persist import load_model

    with pytest.raises(ValueError, match="decision"):
        load_model(model / "depression")
