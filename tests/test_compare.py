"""`fusion compare`: tracked runs side by side, paired on shared folds, refused across splits."""

from __future__ import annotations

import json

import yaml
from test_emotion import ravdess_tree, write_configs

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
