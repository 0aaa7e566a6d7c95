"""Run one extractor over a dataset's samples into the feature store: parallel and resumable.

Each sample is hashed (its source files by content), skipped when the store already has it
with the same hash and parameters, and otherwise computed in a worker. Results come back to
this process, which alone writes the store, one finished sample at a time.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.align import Segmenter
from features.base import ExtractionError, Extractor, Sample
from features.store import FeatureSetKey, FeatureStore, params_hash


@dataclass
class ExtractionSummary:
    """What one extraction run did."""

    feature_set: str
    path: str
    errors_path: str
    n_samples: int
    computed: int
    skipped: int
    failed: int
    warnings: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    computed_ids: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Result:
    sample_id: str
    frame: pd.DataFrame | None
    warnings: list[str]
    error: str | None


def feature_set_key(dataset: str, extractor: Extractor, segmenter: Segmenter) -> FeatureSetKey:
    """The store key of `extractor` + `segmenter` on `dataset`."""
    digest = params_hash(extractor.name, extractor.version, extractor.get_params(),
                         segmenter.config.model_dump(mode="json"))
    return FeatureSetKey(dataset, extractor.name, digest)


def process_one(extractor: Extractor, segmenter: Segmenter, sample: Sample) -> _Result:
    """Segment and extract one sample; any failure becomes a recorded error, never a raise."""
    try:
        seg = segmenter.segment(sample)
        if seg.segments is not None and not seg.segments:
            raise ExtractionError(f"sample {sample.sample_id!r}: segmentation produced no segments")
        frame = extractor.process_sample(sample, seg.segments)
        if frame.empty:
            raise ExtractionError(f"sample {sample.sample_id!r}: {extractor.name} produced no rows")
        warnings = list(seg.warnings) + list(frame.attrs.pop("warnings", []))
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            cols = frame.columns[bad.any(axis=0)]
            warnings.append(
                f"{int(bad.sum())} NaN/inf value(s) in {len(cols)} feature(s) "
                f"(e.g. {', '.join(map(str, cols[:3]))}); kept as NaN, not filled"
            )
        return _Result(sample.sample_id, frame, warnings, None)
    except ExtractionError as err:
        return _Result(sample.sample_id, None, [], str(err))
    except Exception as err:  # noqa: BLE001 - batch work: record the bad item, keep the rest
        where = traceback.extract_tb(err.__traceback__)[-1]
        return _Result(sample.sample_id, None, [],
                       f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})")


def _run_local(extractor: Extractor, segmenter: Segmenter, todo: Sequence[Sample],
               n_jobs: int) -> Iterator[_Result]:
    if n_jobs == 1 or len(todo) <= 1:
        for sample in todo:
            yield process_one(extractor, segmenter, sample)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", backend="loky")
    yield from parallel(delayed(process_one)(extractor, segmenter, s) for s in todo)


def _run_dask(extractor: Extractor, segmenter: Segmenter, todo: Sequence[Sample],
              n_jobs: int, scheduler: str | None) -> Iterator[_Result]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        ext, segr = client.scatter(extractor, broadcast=True), client.scatter(segmenter, broadcast=True)
        futures = [client.submit(process_one, ext, segr, s, pure=False) for s in todo]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_extraction(
    samples: Sequence[Sample],
    extractor: Extractor,
    store: FeatureStore,
    dataset: str,
    segmenter: Segmenter | None = None,
    n_jobs: int = 1,
    executor: Literal["local", "dask"] = "local",
    scheduler: str | None = None,
    progress: bool = True,
) -> ExtractionSummary:
    """Extract `extractor` features for `samples` into `store`, reusing what is cached.

    Args:
        dataset: dataset name; the store keeps one folder per dataset.
        n_jobs: worker processes (local) or workers of a local Dask cluster.
        executor: "local" (joblib processes) or "dask" (a Dask cluster; `scheduler` is its
            address, or None for a local cluster).

    Returns:
        A summary with counts of computed, skipped (cached) and failed samples.
    """
    t0 = time.perf_counter()
    segmenter = segmenter or Segmenter()
    key = feature_set_key(dataset, extractor, segmenter)
    libs = extractor.library_versions()
    cached, notes = store.cached_sources(key, libs)

    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"dataset {dataset!r} has duplicated sample ids: {dup[:5]}")

    todo: list[Sample] = []
    hashes: dict[str, tuple[str, dict[str, Path]]] = {}
    failed: list[str] = []
    skipped = 0
    for sample in samples:
        try:
            files = {**extractor.source_files(sample), **segmenter.source_files(sample)}
            missing = [str(p) for p in files.values() if not Path(p).is_file()]
            if missing:
                raise ExtractionError(f"sample {sample.sample_id!r}: file not found: {', '.join(missing)}")
            digest = store.hasher.combined(files)
        except (ExtractionError, OSError) as err:
            store.write_error_part(key, sample.sample_id, _first_path(sample), str(err))
            failed.append(sample.sample_id)
            continue
        hashes[sample.sample_id] = (digest, files)
        if cached.get(sample.sample_id) == digest:
            skipped += 1
        else:
            todo.append(sample)
    store.hasher.save()

    computed: list[str] = []
    n_warn = 0
    by_id = {s.sample_id: s for s in todo}
    results = (_run_dask(extractor, segmenter, todo, n_jobs, scheduler) if executor == "dask"
               else _run_local(extractor, segmenter, todo, n_jobs))
    bar = tqdm(total=len(todo), desc=f"{extractor.name} [{dataset}/{key.stem}]", unit="sample",
               disable=not progress or not todo, file=sys.stderr, leave=True,
               mininterval=0.2 if sys.stderr.isatty() else 15.0)
    with bar:
        for res in results:
            digest, files = hashes[res.sample_id]
            src = _first_path(by_id[res.sample_id])
            if res.error is not None:
                store.write_error_part(key, res.sample_id, src, res.error)
                failed.append(res.sample_id)
            else:
                store.write_part(key, res.sample_id, res.frame, digest, files, libs)
                computed.append(res.sample_id)
                for w in res.warnings:
                    store.write_error_part(key, res.sample_id, src, w, level="warning")
                    n_warn += 1
            bar.update(1)

    meta = {
        "extractor": extractor.name,
        "extractor_version": extractor.version,
        "params": extractor.get_params(),
        "segmentation": segmenter.config.model_dump(mode="json"),
        "library_versions": libs,
        "feature_names": extractor.feature_names,
    }
    attempted = [s.sample_id for s in todo] + [sid for sid in failed if sid not in by_id]
    path = store.consolidate(key, meta, attempted)
    return ExtractionSummary(
        feature_set=f"{dataset}/{key.stem}",
        path=str(path),
        errors_path=str(store.errors_path(key)),
        n_samples=len(samples),
        computed=len(computed),
        skipped=skipped,
        failed=len(failed),
        warnings=n_warn,
        seconds=round(time.perf_counter() - t0, 3),
        notes=notes,
        computed_ids=sorted(computed),
        failed_ids=sorted(failed),
    )


def _first_path(sample: Sample) -> str:
    return str(next(iter(sample.media.values()), ""))
