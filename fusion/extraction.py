"""`fusion extract`: run every feature set of an extract config over its dataset."""

from __future__ import annotations

import time
from typing import Any

from features.align import Segmenter
from features.registry import build_extractor
from features.runner import run_extraction
from features.store import FeatureStore
from fusion.config.schema import ConfigError, ExtractConfig
from fusion.datasets.base import build_dataset


def extract(cfg: ExtractConfig, only: list[str] | None = None) -> dict[str, Any]:
    """Extract the configured feature sets (or `only` those named) into the store.

    Returns:
        {"dataset", "store", "problems", "feature_sets": {name: summary}, "seconds"}.
    """
    t0 = time.perf_counter()
    names = only or list(cfg.features)
    unknown = [n for n in names if n not in cfg.features]
    if unknown:
        raise ConfigError(f"unknown feature set(s) {unknown}; the config defines: {', '.join(cfg.features)}")
    dataset = build_dataset(cfg.dataset)
    samples = dataset.samples()
    store = FeatureStore(cfg.store)
    results = {}
    for name in names:
        spec = cfg.features[name]
        summary = run_extraction(
            samples, build_extractor(spec.extractor.name, spec.extractor.params), store, cfg.dataset.store_id,
            segmenter=Segmenter(spec.segmentation), n_jobs=cfg.n_jobs,
            executor=cfg.executor, scheduler=cfg.scheduler, progress=cfg.progress,
            lock_timeout=cfg.lock_timeout, name=name,
        )
        results[name] = summary.to_dict()
    return {"dataset": cfg.dataset.store_id, "store": str(store.root),
            "n_samples": len(samples), "problems": dataset.problems,
            "feature_sets": results, "seconds": round(time.perf_counter() - t0, 3)}


def format_extract(result: dict[str, Any]) -> str:
    lines = [f"{'feature set':<22} {'computed':>8} {'cached':>7} {'failed':>7} {'warned':>7} {'s':>7}  file"]
    for name, s in result["feature_sets"].items():
        lines.append(f"{name:<22} {s['computed']:>8} {s['skipped']:>7} {s['failed']:>7} "
                     f"{s['warnings']:>7} {s['seconds']:>7.1f}  {s['path']}")
        if s["failed"] or s["warnings"]:
            lines.append(f"{'':<22} failures and warnings: {s['errors_path']}")
        lines.extend(f"{'':<22} note: {n}" for n in s["notes"])
    lines.extend(f"dataset note: {p}" for p in result["problems"])
    return "\n".join(lines)
