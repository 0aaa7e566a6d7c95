"""`fusion compare`: tracked runs side by side, paired on shared folds, refused across splits."""

from __future__ import annotations

import json

import yaml
from fixtures import ravdess_tree, write_configs

from fusion.cli import main


def test_runs_are_compared_with_paired_differences_and_other_splits_are_refused(tmp_path, capsys):
    corpus = ravdess_tree(tmp_path / "ravdess", actors=(1, 2, 3, 4), emotions=(1, 5))
    extract_cfg, train_cfg = write_configs(tmp_path, corpus, {"name": "logreg", "params": {"C": 1.0}})
    train = yaml.safe_load(train_cfg.read_text())
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    train.update(cv={"scheme": "loso"}, evaluation={"n_bootstrap": 50},
                 tracking={"uri": uri, "artifacts": str(tmp_path / "art"), "experiment": "cmp"})
    train["targets"]["emotion"]["classes"] = ["neutral", "angry"]
    train_cfg.write_text(yaml.safe_dump(train))
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    for name, c in (("strong", 1.0), ("weak", 1e-6)):
        assert main(["train", "--config", str(train_cfg), "--set", f"model.params.learner.params.C={c}",
                     "--set", f"tracking.run_name={name}"]) == 0
    out = tmp_path / "cmp"
    args = ["compare", "--experiment", "cmp", "--tracking-uri", uri, "--metric", "uar", "--out", str(out),
            "--n-bootstrap", "50", "--json", str(tmp_path / "c.json")]
    assert main(args) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert [r["run"] for r in c["table"]] == ["strong", "weak"]
    (pair,) = c["paired"]
    assert pair["n_samples"] == 16 and pair["ci_low"] <= pair["a_minus_b"] <= pair["ci_high"]
    assert [d["key"] for d in c["config_differences"]] == ["model.params.learner.params.C"]
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and (out / "curves.png").is_file()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    # a run split another way is not comparable unless asked
    assert main(["train", "--config", str(train_cfg), "--set", "cv.scheme=holdout", "--set",
                 "cv.test_groups=[actor04]", "--set", "tracking.run_name=other"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "split differently" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_only_finished_runs_are_compared_every_run_is_a_row_and_names_are_escaped(tmp_path, capsys):
    """Failed and running runs are left out (and said so) unless asked for, marked; a run whose
    target does not report the metric is a row saying so; uar and balanced accuracy are one
    metric; run and experiment names are text in compare.html, under the reports' CSP."""
    import mlflow

    corpus = ravdess_tree(tmp_path / "ravdess", actors=(1, 2, 3, 4), emotions=(1, 5))
    extract_cfg, train_cfg = write_configs(tmp_path, corpus, {"name": "logreg", "params": {"C": 1.0}})
    experiment = "cmp<img src=x onerror=alert(1)>"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    train = yaml.safe_load(train_cfg.read_text())
    train.update(cv={"scheme": "loso"}, evaluation={"n_bootstrap": 20},
                 tracking={"uri": uri, "artifacts": str(tmp_path / "art"), "experiment": experiment})
    train["targets"]["emotion"]["classes"] = ["neutral", "angry"]
    train_cfg.write_text(yaml.safe_dump(train))
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    assert main(["train", "--config", str(train_cfg), "--set", "tracking.run_name=<script>alert(1)</script>"]) == 0
    assert main(["train", "--config", str(train_cfg), "--set", "tracking.run_name=ordinal",
                 "--set", "targets.emotion.kind=ordinal"]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    failed = client.create_run(exp, run_name="crashed")
    client.set_terminated(failed.info.run_id, status="FAILED")
    client.create_run(exp, run_name="still-running")  # left RUNNING
    out = tmp_path / "cmp"
    args = ["compare", "--experiment", experiment, "--tracking-uri", uri, "--out", str(out), "--n-bootstrap", "20"]

    assert main([*args, "--metric", "balanced_accuracy", "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["n_runs"] == 2 and len(c["table"]) == 2  # the header's count is the table's
    assert {r["metric"] for r in c["table"]} == {"uar", "balanced_accuracy"}  # one quantity, two names
    assert any("2 run(s) not finished left out (FAILED 1, RUNNING 1" in n for n in c["notes"])
    md = (out / "compare.md").read_text()
    assert md.startswith("# balanced_accuracy of 2 runs") and "not finished left out" in md
    assert c["paired"] and c["paired"][0]["metric"] in ("uar", "balanced_accuracy")

    assert main([*args, "--metric", "uar", "--include-failed", "--json", str(tmp_path / "f.json")]) == 0
    f = json.loads((tmp_path / "f.json").read_text())
    assert f["n_runs"] == 4 and len(f["table"]) == 4
    statuses = {r["run"]: (r["status"], r["mean"]) for r in f["table"]}
    assert statuses["crashed"][0] == "FAILED" and statuses["still-running"][0] == "RUNNING"
    assert all(v != v for _, v in (statuses["crashed"], statuses["still-running"]))  # no figure: NaN
    assert "no results (run FAILED)" in (out / "compare.md").read_text()

    assert main([*args, "--metric", "qwk", "--json", str(tmp_path / "q.json")]) == 0
    q = json.loads((tmp_path / "q.json").read_text())
    assert q["n_runs"] == 2 and q["n_runs_with_metric"] == 1 and len(q["table"]) == 2
    assert "not reported (it reports" in (out / "compare.md").read_text()
    capsys.readouterr()
    assert main([*args, "--metric", "js_mixture"]) == 2
    assert "no selected run reports 'js_mixture'" in capsys.readouterr().err

    html = (out / "compare.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html and "<script" not in html
    assert main([*args, "--run", "nobody"]) == 2
    assert "run(s) ['nobody'] not found" in capsys.readouterr().err
