"""`fusion sweep`: the space checked against the train config, trials on training data only,
an exact trial count across processes, resume, the best configuration, nested evaluation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures import ravdess_tree, write_configs

from fusion.cli import main
from fusion.config.load import load_config
from fusion.config.schema import ConfigError, TrainConfig
from fusion.sweep import SweepConfig, check_sweep


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 4-actor RAVDESS-layout corpus with log-Mel statistics extracted; actor 4 is the test set."""
    tmp = tmp_path_factory.mktemp("sweep")
    root = ravdess_tree(tmp / "ravdess")
    extract_cfg, train_cfg = write_configs(tmp, root, {"name": "logreg", "params": {"C": 1.0}})
    assert main(["extract", "--config", str(extract_cfg)]) == 0
    train = yaml.safe_load(train_cfg.read_text())
    train["cv"] = {"scheme": "holdout", "test_groups": ["actor04"], "inner_splits": 0}
    train["evaluation"] = {"n_bootstrap": 20}
    train["tracking"] = {"enabled": True, "uri": f"sqlite:///{tmp / 'mlruns.db'}", "artifacts": str(tmp / "art"),
                         "experiment": "emo"}
    train_cfg.write_text(yaml.safe_dump(train))
    return tmp


def sweep_file(tmp: Path, name: str, **extra) -> Path:
    cfg = {"train": "train.yaml", "space": {"model.params.learner.params.C": {"type": "float", "low": 1e-4,
                                                                             "high": 10.0, "log": True}},
           "objective": "uar", "folds": 3, "n_trials": 4, "output_dir": str(tmp / "sweeps"), "study": name, **extra}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_key_that_does_not_exist_is_named(corpus):
    bad = SweepConfig(train=Path("train.yaml"), space={"model.params.learner.params.Cc": {
        "type": "float", "low": 0.1, "high": 1.0}})
    with pytest.raises(ConfigError, match="sweep space key 'model.params.learner.params.Cc'"):
        check_sweep(bad, corpus)
    with pytest.raises(ConfigError, match="'qwk' is not a metric of target 'emotion' \\(nominal\\)"):
        check_sweep(bad.model_copy(update={"space": {"model.params.learner.params.C": bad.space[
            "model.params.learner.params.Cc"]}, "objective": "qwk"}), corpus)


def test_a_cross_validated_outer_protocol_is_refused(corpus):
    cfg = SweepConfig(train=Path("train.yaml"), overrides=["cv.scheme=loso"],
                      space={"model.params.learner.params.C": {"type": "float", "low": 0.1, "high": 1.0}})
    with pytest.raises(ConfigError, match="fixed test set"):
        check_sweep(cfg, corpus)


def test_a_sweep_finds_the_best_config_evaluates_it_once_and_resumes(corpus):
    path = sweep_file(corpus, "c_search")
    assert main(["sweep", "--config", str(path), "--json", str(corpus / "s.json")]) == 0
    s = json.loads((corpus / "s.json").read_text())
    assert s["n_trials"] == 4 and s["objective"] == "uar"
    assert sorted(Path(f).name for f in s["figures"]) == ["optimization_history.png", "parallel_coordinates.png"]
    best = load_config(TrainConfig, s["best_config"])  # a complete config `fusion train` accepts
    assert best.model.params["learner"]["params"]["C"] == pytest.approx(s["best"]["params"][
        "model.params.learner.params.C"])
    ev = s["evaluation"]["targets"]["emotion"]
    assert ev["n_samples"] == 8 and ev["n_subjects"] == 1  # only actor 4, which no trial saw
    # the same study again asks for 6: two more trials, the first four kept
    assert main(["sweep", "--config", str(path), "--n-trials", "6", "--json", str(corpus / "s2.json")]) == 0
    s2 = json.loads((corpus / "s2.json").read_text())
    assert s2["n_trials"] == 6 and s2["storage"] == s["storage"]
    # each trial is a nested MLflow run under the sweep's run
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{corpus / 'mlruns.db'}")
    runs = mlflow.search_runs(experiment_names=["emo-sweeps"], output_format="list")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(trials) == 6 and {r.data.tags["trial.state"] for r in trials} <= {"COMPLETE", "PRUNED"}


def test_a_trial_left_running_by_a_killed_process_is_failed_and_retried(corpus):
    """A worker on another host that stops sending heartbeats: its trial is failed after the
    grace period and retried once with its parameters."""
    import optuna

    from fusion.sweep import storage_for

    path = sweep_file(corpus, "killed", heartbeat=1, grace_period=2, n_trials=1, evaluate_best=False)
    assert main(["sweep", "--config", str(path)]) == 0
    cfg = load_config(SweepConfig, path)
    storage, _ = storage_for(cfg, "killed")
    study = optuna.load_study(study_name="killed", storage=storage)
    orphan = study.ask({"model.params.learner.params.C": optuna.distributions.FloatDistribution(1e-4, 10.0, log=True)})
    storage.set_trial_user_attr(orphan._trial_id, "worker", {"host": "elsewhere", "pid": 1, "started": 0.0})
    storage.record_heartbeat(orphan._trial_id)  # then its process "dies": no more heartbeats
    time.sleep(3)
    assert main(["sweep", "--config", str(path), "--n-trials", "3", "--json", str(corpus / "k.json")]) == 0
    s = json.loads((corpus / "k.json").read_text())
    assert s["states"]["FAIL"] == 1 and s["n_trials"] == 3
    retried = [t for t in optuna.load_study(study_name="killed", storage=storage).trials
               if t.system_attrs.get("failed_trial") == orphan.number]
    assert retried and retried[0].params == orphan.params


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_rerun_after_a_killed_worker_completes_the_asked_number_of_trials(corpus, capsys):
    """A sweep killed with SIGKILL leaves its trial RUNNING, with a heartbeat that is not stale
    yet when the sweep is rerun at once: the rerun sees that the trial's worker on this host is
    gone, fails it (not counted), retries it and completes n_trials finished trials."""
    import optuna

    from fusion.sweep import storage_for

    path = sweep_file(corpus, "sigkill", n_trials=3, evaluate_best=False)  # default grace period: 90 s
    assert main(["sweep", "--config", str(path), "--n-trials", "2"]) == 0
    storage, _ = storage_for(load_config(SweepConfig, path), "sigkill")
    study = optuna.load_study(study_name="sigkill", storage=storage)
    orphan = study.ask({"model.params.learner.params.C": optuna.distributions.FloatDistribution(1e-4, 10.0, log=True)})
    storage.set_trial_user_attr(orphan._trial_id, "worker", {"host": socket.gethostname(), "pid": dead_pid(),
                                                             "started": 1.0})
    storage.record_heartbeat(orphan._trial_id)  # fresh: the heartbeat alone would wait 90 s
    capsys.readouterr()
    assert main(["sweep", "--config", str(path), "--json", str(corpus / "sk.json")]) == 0
    s = json.loads((corpus / "sk.json").read_text())
    assert s["n_trials"] == 3 and s["states"].get("FAIL") == 1
    assert [r["trial"] for r in s["recovered"]] == [orphan.number]
    assert f"trial {orphan.number} was left running by worker" in capsys.readouterr().out
    trials = optuna.load_study(study_name="sigkill", storage=storage).trials
    assert [t.state.name for t in trials if t.number == orphan.number] == ["FAIL"]
    # a running trial of a live worker on this host is left alone
    live = study.ask({"model.params.learner.params.C": optuna.distributions.FloatDistribution(1e-4, 10.0, log=True)})
    from fusion.sweep import fail_orphans, worker_identity

    storage.set_trial_user_attr(live._trial_id, "worker", worker_identity())
    assert fail_orphans(study, storage) == []
    study.tell(live, state=optuna.trial.TrialState.FAIL)


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_and_rerun_at_once_runs_every_asked_trial(corpus):
    import signal

    import optuna

    path = sweep_file(corpus, "realkill", n_trials=4, evaluate_best=False, overrides=[
        "model.params.learner={name: mlp, params: {max_epochs: 400, patience: 400, device: cpu, hidden: 32}}"],
        space={"model.params.learner.params.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    url = f"sqlite:///{(corpus / 'sweeps' / 'realkill.db').resolve()}"
    proc = subprocess.Popen([sys.executable, "-m", "fusion.cli", "sweep", "--config", str(path)],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="realkill", storage=url)
            running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"
                       and "worker" in t.user_attrs]
        except Exception:  # noqa: BLE001 - the study is not created yet
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert running, "no trial was seen running before the deadline"
    assert main(["sweep", "--config", str(path), "--json", str(corpus / "rk.json")]) == 0
    s = json.loads((corpus / "rk.json").read_text())
    assert s["n_trials"] == 4 and [r["trial"] for r in s["recovered"]] == [running[0].number]


def test_a_second_sweep_config_never_joins_another_sweeps_study(corpus, capsys):
    """Without a study name the study is named after the sweep config; a stored study made by
    another definition (space, objective, direction, train config) is refused, saying how."""
    first = sweep_file(corpus, "first", n_trials=2, evaluate_best=False, study=None)
    assert main(["sweep", "--config", str(first), "--json", str(corpus / "first.json")]) == 0
    s = json.loads((corpus / "first.json").read_text())
    assert s["study"] == "first" and s["storage"].endswith("/first.db")
    best_before = (corpus / "sweeps" / "first" / "best.yaml").read_text()
    # another sweep config over the same train config gets its own study
    second = sweep_file(corpus, "second", n_trials=2, evaluate_best=False, study=None, objective="ece",
                        direction="minimize")
    assert main(["sweep", "--config", str(second), "--json", str(corpus / "second.json")]) == 0
    s2 = json.loads((corpus / "second.json").read_text())
    assert s2["study"] == "second" and s2["objective"] == "ece" and s2["n_trials"] == 2
    # pointed at the first's study, it is refused, naming what differs
    capsys.readouterr()
    assert main(["sweep", "--config", str(second), "--study", "first", "--storage", s["storage"]]) == 2
    err = capsys.readouterr().err
    assert "belongs to another sweep definition" in err
    assert "objective 'uar' (this sweep: 'ece')" in err
    assert "direction 'maximize' (this sweep: 'minimize')" in err and "--study NAME" in err
    assert (corpus / "sweeps" / "first" / "best.yaml").read_text() == best_before  # untouched
    # another search space, or an edited train config, is refused too
    other = sweep_file(corpus, "first", n_trials=3, evaluate_best=False, study=None, space={
        "model.params.learner.params.C": {"type": "float", "low": 1e-2, "high": 1.0, "log": True}})
    assert main(["sweep", "--config", str(other)]) == 2
    assert "search space (keys model.params.learner.params.C)" in capsys.readouterr().err
    edited = sweep_file(corpus, "first", n_trials=3, evaluate_best=False, study=None,
                        overrides=["evaluation.n_bootstrap=10"])
    assert main(["sweep", "--config", str(edited)]) == 2
    assert "overrides" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "/abs", "", "x" * 200])
def test_a_study_name_is_a_name_not_a_path(corpus, name, capsys):
    path = sweep_file(corpus, "named", n_trials=1, evaluate_best=False)
    assert main(["sweep", "--config", str(path), "--study", name]) == 2
    assert "is not a study name" in capsys.readouterr().err
    assert not (corpus.parent / "x.db").exists() and not (corpus / "x.db").exists()


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "int", "low": 0.2, "high": 0.8}, "an int parameter needs an integer low, got 0.2"),
    ({"type": "int", "low": 1, "high": 8, "step": 0.5}, "an int parameter needs an integer step, got 0.5"),
    ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, "a log-scaled parameter takes no step"),
    ({"type": "int", "low": 0, "high": 8, "log": True}, "a log-scaled int parameter needs low >= 1"),
    ({"type": "float", "low": 1.0, "high": 1.0}, "needs low < high"),
    ({"type": "float", "low": 0.0, "high": 1.0, "step": 2.0}, "step 2 is wider than the range"),
    ({"type": "float", "low": 0.0, "high": 1.0, "choices": [1, 2]}, "takes low and high, not choices"),
    ({"type": "categorical", "choices": [1, 1]}, "choices repeat a value"),
])
def test_the_search_space_is_checked_before_any_trial_naming_the_parameter(corpus, spec, message, capsys):
    path = sweep_file(corpus, "space", n_trials=1, evaluate_best=False,
                      space={"model.params.learner.params.C": spec})
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "'space.model.params.learner.params.C'" in err
    assert not (corpus / "sweeps" / "space.db").exists()  # refused before a study was made


def test_categorical_choices_may_be_lists_and_mappings(corpus):
    """A choice may be any config value (a list of columns, a learner's parameters): offered to
    Optuna as its JSON text, decoded back for the trial and the best configuration."""
    choices = [{"name": "logreg", "params": {"C": 0.1}}, {"name": "logreg", "params": {"C": 10.0}}]
    path = sweep_file(corpus, "lists", n_trials=3, evaluate_best=False,
                      space={"model.params.learner": {"type": "categorical", "choices": choices}})
    assert main(["sweep", "--config", str(path), "--json", str(corpus / "lists.json")]) == 0
    s = json.loads((corpus / "lists.json").read_text())
    assert s["best"]["params"]["model.params.learner"] in choices
    best = load_config(TrainConfig, s["best_config"])
    assert best.model.params["learner"] == s["best"]["params"]["model.params.learner"]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throw-away PostgreSQL server on 127.0.0.1 (as the `postgres` user when run as root)."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver) is not installed")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed here (no initdb / pg_ctl); .ci/run installs it")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # the server's own user must reach its folder: not under pytest's private (0700) tmp dir
    folder = Path(tempfile.mkdtemp(prefix="fusion-pg-")) if as_user else tmp_path_factory.mktemp("pg")
    folder.chmod(0o777)
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    sock.chmod(0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "fusion"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://fusion@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        if as_user:
            shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study_with_an_exact_trial_count(corpus, postgres):
    import optuna

    path = sweep_file(corpus, "pg", n_trials=8, evaluate_best=False)
    cmd = [sys.executable, "-m", "fusion.cli", "sweep", "--config", str(path), "--storage", postgres,
           "--study", "shared"]
    workers = [subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 8  # exactly, though two processes ran them
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert len({(t.user_attrs["worker"]["host"], t.user_attrs["worker"]["pid"]) for t in finished}) == 2  # both


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs" / "sweep").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_sweep_configs_validate_against_their_train_configs(path):
    cfg = load_config(SweepConfig, path)
    train, target = check_sweep(cfg, path.parent)
    assert target in train.targets


def test_networks_and_boosting_report_each_epoch_or_round_to_a_watcher():
    import numpy as np

    from fusion.evaluation.progress import PROGRESS
    from fusion.models.learners.base import LEARNERS

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 5)), np.arange(80) % 2
    for name, params in (("xgboost", {"n_estimators": 12, "early_stopping_rounds": 50}),
                         ("mlp", {"max_epochs": 7, "patience": 50, "device": "cpu"}),
                         ("mlp", {"max_epochs": 7, "patience": 50, "device": "cpu", "engine": "lightning"})):
        seen: list[tuple[float, int]] = []
        token = PROGRESS.set(lambda loss, epoch, seen=seen: seen.append((loss, epoch)))
        try:
            for _ in range(2):  # two fits: the epoch index starts again at 0
                LEARNERS.get(name)(**params).fit(X[:60], y[:60], n_classes=2, eval_set=(X[60:], y[60:]))
        finally:
            PROGRESS.reset(token)
        n = 12 if name == "xgboost" else 7
        assert [e for _, e in seen] == list(range(n)) * 2 and all(v > 0 for v, _ in seen), name


def mlp_sweep(corpus: Path, name: str, **extra):
    """Run a sweep of the MLP learner's learning rate (15 epochs, 2 inner folds); its summary
    and its study."""
    import optuna

    path = sweep_file(corpus, name, evaluate_best=False, prune_after_epochs=2,
                      overrides=["cv.inner_splits=2", "model.params.learner={name: mlp, params: {max_epochs: 15, "
                                 "patience: 15, device: cpu, hidden: 8}}"],
                      space={"model.params.learner.params.lr": {"type": "float", "low": 1e-5, "high": 0.1,
                                                                 "log": True}}, **extra)
    assert main(["sweep", "--config", str(path), "--json", str(corpus / f"{name}.json")]) == 0
    s = json.loads((corpus / f"{name}.json").read_text())
    return s, optuna.load_study(study_name=name, storage=s["storage"])


def test_a_network_sweep_reports_every_epoch_and_can_prune_mid_fold(corpus):
    from fusion.sweep import FIT_STEPS, FOLD_STEPS

    s, study = mlp_sweep(corpus, "mlp", n_trials=8, prune_epoch_folds=3, prune_epoch_factor=1)
    assert s["n_trials"] == 8
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        ends = [st for st in steps if st % FOLD_STEPS == FOLD_STEPS - 1]
        epochs = [st for st in steps if st % FOLD_STEPS != FOLD_STEPS - 1]
        assert epochs and {st // FIT_STEPS % (FOLD_STEPS // FIT_STEPS) for st in epochs} <= {0, 1}  # 2 inner fits
        for a, b in zip(epochs, epochs[1:], strict=False):  # within a fit, the best validation loss so far
            if a // FIT_STEPS == b // FIT_STEPS:
                assert t.intermediate_values[b] >= t.intermediate_values[a]  # negated: never worse
        if t.state.name == "COMPLETE":  # every epoch from the 2nd of every fit was reported
            assert ends == [(f + 1) * FOLD_STEPS - 1 for f in range(3)]
            for fit in {st // FIT_STEPS for st in epochs}:
                ks = sorted(st % FIT_STEPS for st in epochs if st // FIT_STEPS == fit)
                assert ks == list(range(1, ks[-1] + 1)), ks
            assert t.intermediate_values[ends[-1]] == pytest.approx(t.value)
    # epochs are reported at rungs only (each report is a storage write), here 2, 4, 8, in the
    # first fold; the percentile pruner takes the same reports
    s, study = mlp_sweep(corpus, "mlp5", n_trials=3, pruner="percentile", prune_epoch_folds=1)
    epochs = {st for t in study.trials for st in t.intermediate_values if st % FOLD_STEPS != FOLD_STEPS - 1}
    assert epochs and {st % FIT_STEPS + 1 for st in epochs} <= {2, 4, 8} and all(st < FOLD_STEPS for st in epochs)
    # by default only the folds' running means are reported and judged
    s, study = mlp_sweep(corpus, "mlp0", n_trials=2)
    assert all(st % FOLD_STEPS == FOLD_STEPS - 1 for t in study.trials for st in t.intermediate_values)


def test_a_missing_train_config_is_named_as_such(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"train": "nowhere.yaml", "space": {"model.params.C": {
        "type": "float", "low": 0.1, "high": 1.0}}, "output_dir": str(tmp_path)}))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "nowhere.yaml" in err and "sweep space key" not in err


def test_pruners_are_built_as_configured():
    import optuna

    from fusion.sweep import StepPruner, build_pruner

    base = SweepConfig(train=Path("train.yaml"), space={"model.params.C": {"type": "float", "low": 0.1, "high": 1.0}})
    p = build_pruner(base.model_copy(update={"pruner": "percentile", "keep_percentile": 75.0}))
    assert isinstance(p, StepPruner) and isinstance(p, optuna.pruners.BasePruner) and p.keep_percentile == 75.0
    assert isinstance(build_pruner(base), StepPruner) and build_pruner(base).keep_percentile == 50.0
    assert isinstance(build_pruner(base.model_copy(update={"pruner": "none"})), optuna.pruners.NopPruner)


def test_the_step_pruner_compares_like_with_like():
    """A fold's end is compared with the other trials' running means at that fold's end, an
    epoch with their best validation loss at the same epoch of the same fit (an early-stopped
    fit's last value standing in), never with the trial's values of another kind."""
    import optuna

    from fusion.sweep import StepPruner, epoch_step, fold_step

    optuna.pruners.BasePruner.register(StepPruner)
    study = optuna.create_study(direction="maximize", pruner=StepPruner(50.0, n_startup_trials=3))
    # three completed trials: running weighted F1 at the end of fold 0, negated best losses
    # at epochs 4 and 9 of fit 0 of fold 1 (the third stopped after epoch 4)
    for f1, losses in ((0.30, (-1.0, -0.9)), (0.40, (-1.1, -1.0)), (0.50, (-0.8,))):
        values = {fold_step(0): f1, **{epoch_step(1, 0, e): v for e, v in zip((4, 9), losses, strict=False)}}
        study.add_trial(optuna.trial.create_trial(value=f1, intermediate_values=values))

    def judged(reports):
        trial = study.ask()
        for step, v in reports:
            trial.report(v, step)
        verdict = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return verdict

    assert judged([(fold_step(0), 0.35)]) and not judged([(fold_step(0), 0.45)])  # median 0.40
    # a high F1 at fold 0's end does not shield a poor loss in fold 1 (Optuna's own rules take
    # the best value over all steps, mixing the two kinds)
    assert judged([(fold_step(0), 0.9), (epoch_step(1, 0, 4), -1.05)])  # median of -1.0, -1.1, -0.8
    assert not judged([(fold_step(0), 0.1), (epoch_step(1, 0, 4), -0.95)])
    # at epoch 9 the early-stopped third trial counts with its epoch-4 value: median -0.9
    assert judged([(epoch_step(1, 0, 9), -0.95)]) and not judged([(epoch_step(1, 0, 9), -0.85)])
    # another fit of the same fold has no values yet: nothing to compare with
    assert not judged([(epoch_step(1, 1, 4), -5.0)])
    assert judged([(epoch_step(1, 0, 4), float("nan"))])  # a diverged fit


def test_a_metric_undefined_on_every_fold_is_nan_without_a_numpy_warning():
    import warnings

    from fusion.evaluation.metrics import bootstrap_intervals, finite_mean

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice", "All-NaN slice"
        assert np.isnan(finite_mean([float("nan"), float("nan")])) and np.isnan(finite_mean([]))
        assert finite_mean([0.5, float("nan"), 0.7]) == pytest.approx(0.6)
        # a metric undefined on some resamples (one class drawn) and one undefined on all
        y = np.array([0, 0, 0, 1])
        scores = np.array([[0.1, 0.2, 0.3, 0.9], [0.2, 0.1, 0.4, 0.8]])

        def metrics(yy, ss):
            return {"auc": float(ss[yy == 1].mean() - ss[yy == 0].mean()) if len(set(yy)) == 2 else float("nan"),
                    "never": float("nan")}

        ci = bootstrap_intervals(metrics, y, scores, np.arange(4), 200, 0)
        assert np.isfinite(ci["auc"]).all() and np.isnan(ci["never"]).all()
