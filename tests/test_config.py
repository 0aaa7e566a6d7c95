"""Typed configuration: validation errors name the key, the file and the valid keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.config.load import load_config, parse_override
from fusion.config.schema import ConfigError, DataConfig, DemoConfig, ExtractConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]

EXTRACT = """\
dataset: {name: daic-woz, root: data/demo}
features:
  egemaps:
    extractor: {name: opensmile, params: {feature_set: eGeMAPSv02}}
"""
TRAIN = """\
extract: extract.yaml
modalities: {audio: [{features: egemaps}]}
targets: {depression: {label: PHQ8_Binary, n_classes: 2}}
model: {name: early-fusion, params: {learner: {name: logreg, params: {C: 0.5}}}}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_top_level_key_names_key_file_and_valid_keys(tmp_path):
    path = write(tmp_path, "extract.yaml", EXTRACT + "n_jobz: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(ExtractConfig, path)
    msg = str(err.value)
    assert "'n_jobz'" in msg
    assert "extract.yaml" in msg
    assert "valid keys at the top level" in msg
    for key in ("dataset", "store", "features", "n_jobs", "executor"):
        assert key in msg


def test_nested_typo_lists_the_keys_of_its_section(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN + "cv: {n_splits: 5, n_repeat: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert "'cv.n_repeat'" in msg and "train.yaml" in msg
    assert "valid keys at cv: scheme, n_splits, n_repeats, seed, inner_splits" in msg


def test_error_inside_an_included_file_names_that_file(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT.replace("features:", "storee: x\nfeatures:"))
    path = write(tmp_path, "train.yaml", TRAIN)
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert "'extract.storee'" in msg
    assert "extract.yaml" in msg and "train.yaml" not in msg


def test_unknown_extractor_parameter_is_reported_with_valid_parameters(tmp_path):
    path = write(tmp_path, "extract.yaml", EXTRACT.replace("feature_set:", "featureset:"))
    with pytest.raises(ConfigError) as err:
        load_config(ExtractConfig, path)
    msg = str(err.value)
    assert "features.egemaps.extractor.params.featureset" in msg
    assert "feature_set" in msg and "level" in msg and "sampling_rate" in msg


def test_bad_extractor_parameter_value(tmp_path):
    path = write(tmp_path, "extract.yaml", EXTRACT.replace("eGeMAPSv02", "eGeMAPS_v9"))
    with pytest.raises(ConfigError, match="feature_set.*eGeMAPS_v9"):
        load_config(ExtractConfig, path)


def test_unknown_component_name_lists_registered_names(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN.replace("early-fusion", "middle-fusion"))
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert "Unknown model 'middle-fusion'" in msg and "late-fusion" in msg and "model.name" in msg
    path = write(tmp_path, "train.yaml", TRAIN.replace("logreg", "logistic"))
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert "model.params.learner.name" in msg and "Unknown learner 'logistic'" in msg and "xgboost" in msg


def test_learner_parameters_are_validated(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN.replace("C: 0.5", "Cee: 0.5"))
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert "unknown key 'model.params.learner.params.Cee'" in msg and "C, class_weight" in msg


def test_type_error_names_key_and_value(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN + "cv: {n_splits: five}\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    assert "'cv.n_splits'" in str(err.value) and "'five'" in str(err.value)


def test_set_overrides_values_with_yaml_typing(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN)
    cfg = load_config(TrainConfig, path, ["model.params.learner.params.C=0.25", "cv.n_repeats=7",
                                          "extract.n_jobs=2", "tracking.run_name=null"])
    assert cfg.model.params == {"learner": {"name": "logreg", "params": {"C": 0.25}}}
    assert cfg.cv.n_repeats == 7
    assert cfg.extract.n_jobs == 2
    assert cfg.tracking.run_name is None


def test_set_with_a_typo_is_blamed_on_the_command_line(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN)
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path, ["model.hidden=64"])
    msg = str(err.value)
    assert "'model.hidden'" in msg and "--set model.hidden=64" in msg
    assert "valid keys at model: name, params" in msg


def test_set_into_a_scalar_is_an_error(tmp_path):
    write(tmp_path, "extract.yaml", EXTRACT)
    path = write(tmp_path, "train.yaml", TRAIN)
    with pytest.raises(ConfigError, match="'target' in --set target.x=1"):
        load_config(TrainConfig, path, ["target.x=1"])
    with pytest.raises(ConfigError, match="'model.name' is a value"):
        load_config(TrainConfig, path, ["model.name.x=1"])


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_malformed_set_items(item):
    with pytest.raises(ConfigError):
        parse_override(item)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(ExtractConfig, tmp_path / "nope.yaml")
    path = write(tmp_path, "bad.yaml", "dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(ExtractConfig, path)
    path = write(tmp_path, "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(ExtractConfig, path)


SHIPPED = ([("configs/demo.yaml", DemoConfig)]
           + [(str(p.relative_to(ROOT)), ExtractConfig) for p in sorted(ROOT.glob("configs/extract/*.yaml"))]
           + [(str(p.relative_to(ROOT)), TrainConfig) for p in sorted(ROOT.glob("configs/train/*.yaml"))]
           + [(str(p.relative_to(ROOT)), DataConfig) for p in sorted(ROOT.glob("configs/data/*.yaml"))])


@pytest.mark.parametrize("path,model", SHIPPED, ids=[p for p, _ in SHIPPED])
def test_shipped_configs_validate(path, model):
    cfg = load_config(model, ROOT / path)
    assert cfg is not None
