"""The public Python API: everything a notebook needs, imported from the package roots only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_roots_export_the_api_lazily():
    import subprocess
    import sys

    import features
    import fusion

    for name in fusion.__all__:
        assert getattr(fusion, name) is not None, name
    for name in features.__all__:
        assert getattr(features, name) is not None, name
    assert {"load_config", "train", "extract", "load_model", "build_dataset", "MODELS", "PROTOCOLS",
            "DATASETS", "LEARNERS"} <= set(fusion.__all__)
    assert {"build_extractor", "EXTRACTORS", "FeatureStore", "run_extraction"} <= set(features.__all__)
    from fusion.config import TrainConfig, load_config
    from fusion.datasets import DATASETS, build_dataset

    assert load_config is fusion.load_config and TrainConfig is fusion.TrainConfig
    assert build_dataset is fusion.build_dataset and "daic-woz" in DATASETS.names()
    with pytest.raises(AttributeError, match="its public names: "):
        fusion.nope  # noqa: B018
    # importing the root imports nothing heavy: the API is loaded on first use
    code = "import sys, fusion, features; print(sorted(m for m in sys.modules if m.startswith(('fusion.', 'torch', 'mlflow'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert eval(out) == []  # noqa: S307 - a list of module names printed by the line above


@pytest.mark.slow
def test_train_runs_the_configs_protocol_from_python(severity_corpus, tmp_path):
    """`fusion.train(cfg)` with `protocol: trimodal-paper` runs that protocol — not the default
    one — and the summary, the run folder and MLflow say so."""
    from fusion import PROTOCOLS, TrainConfig, load_config, train

    root, store = severity_corpus
    cfg = load_config(TrainConfig, ROOT / "configs/train/severity_late_fusion.yaml", [
        f"extract.dataset.root={root}", f"extract.store={store}", "protocol=trimodal-paper", "paper.n_splits=3",
        "paper.seeds=[0]", "evaluation.n_bootstrap=20", f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}",
        f"tracking.artifacts={tmp_path / 'art'}", f"output_dir={tmp_path / 'out'}"])
    s = train(cfg)
    assert s["protocol"] == "trimodal-paper" and s["n_features"] == 1536
    assert set(s["targets"]["depression"]["metrics"]) == {
        "paper (early stopping on the scored fold)", "paper features, early stopping on inner validation"}
    written = json.loads((Path(s["outputs"]["dir"]) / "metrics.json").read_text())
    assert written["protocol"] == "trimodal-paper"
    import mlflow

    tags = mlflow.tracking.MlflowClient(tracking_uri=s["tracking_uri"]).get_run(s["run_id"]).data.tags
    assert tags["protocol"] == "trimodal-paper"
    assert "optimistic" in PROTOCOLS.get("trimodal-paper")().format(s)
    # an unknown protocol is refused before anything is read, listing the registered ones
    from fusion import ConfigError

    with pytest.raises(ConfigError, match="invalid value for 'protocol': Unknown protocol 'ours'.*nested-cv"):
        train(cfg.model_copy(update={"protocol": "ours"}))
