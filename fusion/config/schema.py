"""The configuration schema: one pydantic model per command's config, unknown keys forbidden.

Loading, `--set` overrides and error messages are in `fusion.config.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.align import SegmentationConfig
from fusion.evaluation.splits import Seed, SplitConfig


class ConfigError(ValueError):
    """A configuration could not be loaded or validated; the message says where and why."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(StrictModel):
    """A registered component (extractor, dataset, model) by name, with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(StrictModel):
    """A corpus: adapter name, its folder, adapter parameters, its feature-store folder, and
    what coded label values mean (`codebook: {Gender: {"0": female, "1": male}}`, added to the
    adapter's own), for reports."""

    name: str = "daic-woz"
    root: Path
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    codebook: dict[str, dict[str, str]] = Field(default_factory=dict)

    @property
    def store_id(self) -> str:
        """Folder name of this corpus in the feature store (default: name-rootfolder)."""
        return self.id or f"{self.name}-{self.root.resolve().name}"


class FeatureSetSpec(StrictModel):
    """One feature set: an extractor and how samples are segmented for it."""

    extractor: ComponentSpec
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)


class ExtractConfig(StrictModel):
    dataset: DatasetSpec
    store: Path = Path("features_store")
    features: dict[str, FeatureSetSpec]
    n_jobs: int = Field(1, ge=1)
    executor: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    progress: bool = True
    lock_timeout: float = Field(3600.0, ge=0)

    @model_validator(mode="after")
    def _feature_set_names(self) -> ExtractConfig:
        import re

        bad = [n for n in self.features if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", n)]
        if bad:
            raise ValueError(f"feature set name(s) {bad} cannot name a store file: use letters, digits "
                             "and _ . + - (starting with a letter or digit)")
        return self


PoolStat = Literal["mean", "std", "min", "max", "median"]


class InputSpec(StrictModel):
    """A feature set fed to a model and how its rows (turns, windows, frames) become model
    input: pooled to one row per sample by the statistics in `pool`, or kept as a per-segment
    sequence (`pool: sequence`, at most `max_len` segments per sample); optionally only the
    columns matching shell-style patterns (e.g. "mean_*").

    normalise: `speaker` z-scores every feature within each subject (speaker), from all of that
    speaker's rows: unsupervised (no label is used), so legitimate for test speakers too, and
    standard in cross-speaker emotion recognition. It needs several rows per speaker (at least
    `speaker_min_rows`; a speaker with fewer is an error naming them).
    context: for pooled inputs, instead of the sample's own features, the mean of the previous
    `context` samples of the same group (a MELD dialogue's earlier utterances, in the corpus's
    order); missing for a group's first sample. Configure it as its own modality beside the
    sample's features.
    dialogue: for pooled inputs, the sample's group as a sequence of turns instead of one row:
    up to `dialogue` samples before and after it in its group (a MELD dialogue's utterances, in
    order), each its pooled row with the per-turn speaker columns of `features.dialogue`; the
    sample is the turn at position 0 (segment times are positions relative to it). For models
    over sequences (`dialogue-context`); a modality with a dialogue input has that input only.
    """

    features: str
    pool: list[PoolStat] | Literal["sequence"] = Field(default_factory=lambda: ["mean"])
    max_len: int | None = Field(None, ge=1)
    columns: list[str] | None = None
    normalise: Literal["none", "speaker"] = "none"
    speaker_min_rows: int = Field(5, ge=2)
    context: int = Field(0, ge=0)
    dialogue: int = Field(0, ge=0, le=256)

    @model_validator(mode="after")
    def _max_len_for_sequences(self) -> InputSpec:
        if self.max_len is not None and self.pool != "sequence":
            raise ValueError("max_len applies only to `pool: sequence` inputs")
        if self.context and self.pool == "sequence":
            raise ValueError("context applies only to pooled inputs")
        if self.dialogue and self.pool == "sequence":
            raise ValueError("dialogue applies only to pooled inputs (each turn is the sample's pooled row)")
        if self.dialogue and self.context:
            raise ValueError("dialogue and context are two ways of giving the dialogue; choose one")
        return self

    @property
    def is_sequence(self) -> bool:
        """The input is a sequence: of segments (`pool: sequence`) or of a dialogue's turns."""
        return self.pool == "sequence" or bool(self.dialogue)


class VadMixtureSpec(StrictModel):
    """VAD-mixture soft labels of a multilabel target (`fusion.datasets.vad_mixture`): the
    target's continuous ratings mapped to a distribution over emotions, trained as an extra
    head (soft-target cross-entropy, loss weight: the model's `mixture_weight`) and scored by
    Jensen–Shannon and KL divergence. `columns`: the valence, arousal (and dominance) label columns in that order
    (default: the target's `continuous`); `scale`: their range (EMOTIC: [1, 10]); `emotions`: a
    named set (basic, compound, basic+compound) or {name: [word] | [word, word]}; `norms`: a
    norms file in the Warriner et al. 2013 layout (default: the shipped excerpt); `compound`,
    `temperature` and `priors` ({emotion: weight}, every emotion; default equal) as in
    `VadMixture.build`."""

    emotions: str | dict[str, list[str]] = "basic+compound"
    columns: list[str] | None = None
    scale: tuple[float, float] = (1.0, 10.0)
    norms: Path | None = None
    compound: Literal["midpoint", "product"] = "midpoint"
    temperature: float = Field(1.0, gt=0)
    priors: dict[str, float] | None = None

    @model_validator(mode="after")
    def _valid(self) -> VadMixtureSpec:
        from fusion.datasets.vad_mixture import EMOTION_SETS

        if isinstance(self.emotions, str) and self.emotions not in EMOTION_SETS:
            raise ValueError(f"unknown emotion set {self.emotions!r}; known: {', '.join(EMOTION_SETS)}")
        if self.columns is not None and len(self.columns) not in (2, 3):
            raise ValueError(f"columns names valence, arousal and optionally dominance, got {self.columns}")
        if not self.scale[1] > self.scale[0]:
            raise ValueError(f"scale must be [low, high] with high > low, got {list(self.scale)}")
        return self

    def build(self, continuous: list[str]):
        """The `VadMixture` of this spec for a target whose continuous labels are `continuous`."""
        from fusion.datasets.vad_mixture import DIMENSIONS, VadMixture

        cols = self.columns or continuous
        return VadMixture.build(self.emotions, norms=self.norms, dims=DIMENSIONS[:len(cols)], scale=self.scale,
                                temperature=self.temperature, compound=self.compound, priors=self.priors)


class TargetSpec(StrictModel):
    """A classification target, what counts as positive for the decision curve, and an
    optional score label fused by the same model (regression head).

    Labels are class indices 0..n_classes-1, or values named in `classes` (e.g. emotion names,
    or RAVDESS's codes), which are mapped to indices in that order and kept with the model and
    in every table. `kind` says whether the classes are ordered (severity: quadratic kappa and
    adjacent accuracy are reported) or nominal (emotions: unweighted average recall, the
    field's headline, with per-class recall and the confusion matrix); it defaults to nominal
    when `classes` are given and ordinal otherwise. `names` are display names of the classes
    (reports, tables), in class order.

    `decision`: which class the model names. `argmax` (default): the most probable one, which
    maximises accuracy; `f1_weighted`, `f1_macro` or `uar`: the class whose log probability plus
    a per-class offset is largest, the offsets chosen to maximise that metric on the model's
    predictions of training samples it was not fitted on (`fusion.evaluation.decision`). The
    probabilities are unchanged; the labels (and every metric of labels) follow the rule.

    `kind: multilabel` (EMOTIC's 26 categories): `label` is a glob of 0/1 label columns (e.g.
    `cat_*`), each a label of its own; `continuous` names continuous labels trained jointly
    (valence, arousal, dominance); `vad_mixture` adds their VAD-mixture soft labels as a
    third head (`VadMixtureSpec`). Such targets are evaluated by the `official-multilabel` protocol.
    """

    label: str
    n_classes: int | None = Field(None, ge=2)
    classes: list[str] | None = None
    kind: Literal["ordinal", "nominal", "multilabel"] | None = None
    positive_from: int | None = None
    positive_name: str | None = None
    score: str | None = None
    names: list[str] | None = None
    continuous: list[str] | None = None
    vad_mixture: VadMixtureSpec | None = None
    decision: Literal["argmax", "f1_weighted", "f1_macro", "uar"] = "argmax"

    @model_validator(mode="before")
    @classmethod
    def _classes_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("classes"), list):
            data = {**data, "classes": [str(c) for c in data["classes"]]}
        return data

    @model_validator(mode="after")
    def _classes(self) -> TargetSpec:
        if self.kind == "multilabel":
            if self.classes is not None or self.n_classes is not None or self.positive_from is not None:
                raise ValueError("a multilabel target takes `label` (a glob of 0/1 columns) and `continuous`, "
                                 "not classes, n_classes or positive_from")
            if self.decision != "argmax":
                raise ValueError("decision rules are for single-label classes; a multilabel target's labels are "
                                 "thresholded per label by its protocol")
            if self.vad_mixture is not None:
                cols = self.vad_mixture.columns or self.continuous or []
                if len(cols) not in (2, 3):
                    raise ValueError("vad_mixture needs the valence and arousal (and dominance) labels: list them "
                                     f"in `continuous` or `vad_mixture.columns` (got {cols})")
                missing = [c for c in cols if c not in (self.continuous or [])]
                if missing:
                    raise ValueError(f"vad_mixture columns {missing} must also be `continuous` labels of the target")
            return self
        if self.vad_mixture is not None:
            raise ValueError("vad_mixture belongs to a multilabel target with continuous VAD labels")
        if self.continuous is not None:
            raise ValueError("`continuous` labels belong to a multilabel target (kind: multilabel)")
        if self.classes is not None:
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must name at least 2 distinct classes, got {self.classes}")
            if self.n_classes is not None and self.n_classes != len(self.classes):
                raise ValueError(f"n_classes is {self.n_classes} but classes lists {len(self.classes)}")
            self.n_classes = len(self.classes)
        elif self.n_classes is None:
            raise ValueError("give n_classes (labels 0..n_classes-1) or classes (the label values, in order)")
        if self.kind is None:
            self.kind = "nominal" if self.classes is not None else "ordinal"
        if self.names is not None and len(self.names) != self.n_classes:
            raise ValueError(f"names gives {len(self.names)} display names for {self.n_classes} classes")
        if self.positive_from is not None and not 0 < self.positive_from < self.n_classes:
            raise ValueError(f"positive_from must be a class index in 1..{self.n_classes - 1}")
        return self

    @property
    def class_names(self) -> list[str]:
        return list(self.classes) if self.classes is not None else [str(k) for k in range(self.n_classes)]


class ConformalConfig(StrictModel):
    """Conformal prediction sets for classification targets and intervals for score heads,
    calibrated on predictions of training samples by models that did not see them
    (`fusion.evaluation.conformal`): coverage and set size at each level `alphas` (the true
    class is in the set for at least 1 − α of exchangeable people), per `group_by` group with
    its own threshold where the group has enough calibration samples.

    Attributes:
        scores: `lac`, `aps`, `ordinal` (contiguous sets of adjacent classes), or `auto`: all
            three for an ordinal target, `lac` and `aps` for a nominal one.
        group_by: a labels column for group-conditional (Mondrian) thresholds; `auto`: a
            column named gender or sex when the labels have one; null: none.
        randomise: randomised `aps` / `ordinal` sets as in their papers (exact coverage, may
            be empty), seeded; otherwise the conservative deterministic ones (never empty).
        calibration_fold: for a model without held-out predictions of its training samples
            (only late and early fusion keep them), fit one more model per fold without its
            first inner fold and calibrate on that fold; otherwise such a model gets no sets.
        max_size: abstain when a set holds more classes than this (selective accuracy reported
            for every size).
        report_alpha: the level a report's sets and intervals use (one of `alphas`).
    """

    enabled: bool = True
    alphas: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.1, 0.2], min_length=1)
    scores: list[Literal["lac", "aps", "ordinal"]] | Literal["auto"] = "auto"
    group_by: str | None = "auto"
    randomise: bool = False
    calibration_fold: bool = False
    max_size: int | None = Field(None, ge=1)
    report_alpha: float = 0.1

    @model_validator(mode="after")
    def _report_alpha_is_evaluated(self) -> ConformalConfig:
        if self.report_alpha not in self.alphas:
            raise ValueError(f"report_alpha {self.report_alpha} is not one of alphas {self.alphas}")
        return self


class EvaluationConfig(StrictModel):
    """What is evaluated besides the model: `ablation` (every modality subset, and the
    model's own baselines plus `baselines`, each a registered model by name and params),
    `robustness` (each modality dropped or noised), decision curves, attributions, plots.
    `save_model` fits the model on all the data and saves it under `model_dir/<target>`
    (default: the run's output folder `model/`), e.g. for the `emotion` extractor. `conformal`:
    prediction sets with guaranteed coverage (`ConformalConfig`)."""

    ablation: bool = False
    baselines: dict[str, ComponentSpec] = Field(default_factory=dict)
    robustness: bool = False
    noise_levels: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    decision_curves: bool = False
    attributions: bool = False
    plots: bool = False
    n_bootstrap: int = Field(1000, ge=0)
    conformal: ConformalConfig = Field(default_factory=ConformalConfig)
    save_model: bool = False
    model_dir: Path | None = None


class PaperProtocolConfig(StrictModel):
    """The tri-modal paper's public-code setup, for `--protocol trimodal-paper`."""

    audio: str = "logmel_session"
    face: str = "face_frames"
    text: str = "text_transcript"
    text_dim: int = 768
    face_dim: int = 512
    n_splits: int = 7
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2])


class TrackingConfig(StrictModel):
    enabled: bool = True
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifacts: Path = Path("mlruns/artifacts")
    experiment: str = "default"
    run_name: str | None = None


class TrainConfig(StrictModel):
    """`fusion train`: modalities (each one or more feature sets, pooled or as sequences),
    targets, a fusion model from the registry, the evaluation split, what to evaluate, and
    tracking. `protocol` names a registered evaluation protocol (`fusion.protocols`): `auto`
    (`official-multilabel` for multi-label targets, `nested-cv` otherwise), or one by name, e.g.
    the published baseline `trimodal-paper`."""

    extract: ExtractConfig | None = None
    modalities: dict[str, Annotated[list[InputSpec], Field(min_length=1)]] = Field(min_length=1)
    targets: dict[str, TargetSpec] = Field(min_length=1)
    model: ComponentSpec
    cv: SplitConfig = Field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    protocol: str = "auto"
    paper: PaperProtocolConfig = Field(default_factory=PaperProtocolConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output_dir: Path = Path("outputs")


class CorpusConfig(StrictModel):
    """The synthetic demo corpus (written into the extract config's dataset root)."""

    n_sessions: int = Field(60, ge=4)
    seed: Seed = 0
    questions: int = Field(10, ge=2)
    dev_fraction: float = Field(0.3, ge=0.0, lt=1.0)


class DataConfig(StrictModel):
    """`fusion data describe`: a dataset, and optionally the split to check on it."""

    dataset: DatasetSpec
    cv: SplitConfig | None = None
    target: str | None = None


class DemoConfig(StrictModel):
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    extract: ExtractConfig
    train: TrainConfig
