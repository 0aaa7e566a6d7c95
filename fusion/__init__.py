"""Datasets, fusion models, training, evaluation and tracking: everything after the feature cache.

The public Python API, for notebooks and scripts (the same entry points as the `fusion`
command)::

    from fusion import load_config, TrainConfig, extract, train, load_model

    cfg = load_config(TrainConfig, "configs/train/severity_late_fusion.yaml", ["cv.n_repeats=1"])
    summary = train(cfg)                      # the config's protocol; the run folder and MLflow
    model = load_model(f"{summary['model_dir']}/depression")

Names are imported when first used, so that `import fusion` stays light.
"""

from __future__ import annotations

from features.lazy import lazy_exports

__version__ = "0.1.0"

#: public name → the module that defines it
API = {
    # configuration
    "load_config": "fusion.config.load", "ConfigError": "fusion.config.schema",
    "TrainConfig": "fusion.config.schema", "ExtractConfig": "fusion.config.schema",
    "DataConfig": "fusion.config.schema", "DemoConfig": "fusion.config.schema",
    # the jobs
    "extract": "fusion.extraction", "train": "fusion.training", "run_sweep": "fusion.sweep",
    "SweepConfig": "fusion.sweep", "compare": "fusion.comparison", "make_reports": "fusion.report.build",
    "ReportRequest": "fusion.report.build", "run_demo": "fusion.demo",
    # data, models and their registries
    "build_dataset": "fusion.datasets.base", "DATASETS": "fusion.datasets.base",
    "load_model_data": "fusion.data.blocks", "select_target": "fusion.data.blocks",
    "MODELS": "fusion.models.base", "FusionModel": "fusion.models.base",
    "LEARNERS": "fusion.models.learners.base", "PROTOCOLS": "fusion.protocols.base",
    "load_model": "fusion.persist", "save_model": "fusion.persist",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, API)
