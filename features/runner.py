"""Run one extractor over a dataset's samples into the feature store: parallel and resumable.

Each sample is hashed (its source files by content), skipped when the store already has it
with the same hash and parameters, and otherwise computed. Work goes to the workers in
chunks of samples; each finished chunk comes back to this process, which alone writes the
store, appending the chunk at once so that an interrupted run keeps it.
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
from features.base import BatchResult, ExtractionError, Extractor, Sample
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
class ChunkOutcome:
    """One chunk's result: the rows of its good samples, and what failed or was warned about."""

    frame: pd.DataFrame | None
    done: list[str]
    failed: dict[str, str]
    warnings: dict[str, list[str]]


def feature_set_key(dataset: str, extractor: Extractor, segmenter: Segmenter) -> FeatureSetKey:
    """The store key of `extractor` + `segmenter` on `dataset`."""
    digest = params_hash(extractor.name, extractor.version, extractor.get_params(),
                         segmenter.config.model_dump(mode="json"))
    return FeatureSetKey(dataset, extractor.name, digest)


def _describe(err: BaseException) -> str:
    if isinstance(err, ExtractionError):
        return str(err)
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(err).__name__}: {err}{at}"


def process_chunk(extractor: Extractor, segmenter: Segmenter,
                  samples: Sequence[Sample]) -> ChunkOutcome:
    """Segment and extract a chunk of samples; every failure becomes a recorded error.

    Samples without rows are failures; NaN or inf values are kept (never filled) and
    reported as warnings of their sample.
    """
    failed: dict[str, str] = {}
    warnings: dict[str, list[str]] = {}
    items = []
    for sample in samples:
        try:
            seg = segmenter.segment(sample)
            if seg.segments is not None and not seg.segments:
                raise ExtractionError(f"sample {sample.sample_id!r}: segmentation produced no segments")
            items.append((sample, seg.segments))
            warnings[sample.sample_id] = list(seg.warnings)
        except Exception as err:  # noqa: BLE001 - batch work: record the bad item, keep the rest
            failed[sample.sample_id] = _describe(err)
    batch = extractor.process_samples(items) if items else BatchResult(None, {}, {})
    for sid, err in batch.errors.items():
        failed[sid] = _describe(err)
    for sid, ws in batch.warnings.items():
        warnings.setdefault(sid, []).extend(ws)
    frame = batch.frame
    ids = frame.index.get_level_values(0) if frame is not None else pd.Index([])
    present = set(ids.unique())
    for sample, _ in items:
        sid = sample.sample_id
        if sid not in failed and sid not in present:
            failed[sid] = f"sample {sid!r}: {extractor.name} produced no rows"
    if frame is not None:
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            bad_rows = bad.any(axis=1)
            for sid in pd.unique(ids[bad_rows]):
                mask = np.asarray(ids == sid) & bad_rows
                cols = frame.columns[bad[mask].any(axis=0)]
                warnings.setdefault(sid, []).append(
                    f"{int(bad[mask].sum())} NaN/inf value(s) in {len(cols)} feature(s) "
                    f"(e.g. {', '.join(map(str, cols[:3]))}); kept as NaN, not filled")
        keep = ~ids.isin(list(failed))
        if not keep.all():
            frame = frame[keep]
    done = [s.sample_id for s, _ in items if s.sample_id not in failed]
    return ChunkOutcome(frame if done else None, done, failed,
                        {sid: w for sid, w in warnings.items() if w and sid not in failed})


def _chunks(samples: Sequence[Sample], size: int) -> list[list[Sample]]:
    return [list(samples[i:i + size]) for i in range(0, len(samples), size)]


def _run_local(extractor: Extractor, segmenter: Segmenter, chunks: list[list[Sample]],
               n_jobs: int) -> Iterator[ChunkOutcome]:
    if n_jobs == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield process_chunk(extractor, segmenter, chunk)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", backend="loky")
    yield from parallel(delayed(process_chunk)(extractor, segmenter, c) for c in chunks)


def _run_dask(extractor: Extractor, segmenter: Segmenter, chunks: list[list[Sample]],
              n_jobs: int, scheduler: str | None) -> Iterator[ChunkOutcome]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        ext, segr = client.scatter([extractor, segmenter], broadcast=True)
        futures = [client.submit(process_chunk, ext, segr, c, pure=False) for c in chunks]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def auto_chunk_size(extractor: Extractor, n_todo: int, n_jobs: int) -> int:
    """Samples per task: the extractor's preference, else enough tasks to balance the workers
    while amortising per-task overhead on corpora of many short clips."""
    if extractor.chunk_size:
        return extractor.chunk_size
    return int(np.clip(n_todo // (n_jobs * 16), 1, 32))


def run_extraction(
    samples: Sequence[Sample],
    extractor: Extractor,
    store: FeatureStore,
    dataset: str,
    segmenter: Segmenter | None = None,
    n_jobs: int = 1,
    executor: Literal["local", "dask"] = "local",
    scheduler: str | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> ExtractionSummary:
    """Extract `extractor` features for `samples` into `store`, reusing what is cached.

    Args:
        dataset: dataset name; the store keeps one folder per dataset.
        n_jobs: worker processes (local) or workers of a local Dask cluster.
        executor: "local" (joblib processes) or "dask" (a Dask cluster; `scheduler` is its
            address, or None for a local cluster of `n_jobs` workers).
        chunk_size: samples per task (None: see `auto_chunk_size`).

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
    sources: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    skipped = 0
    computed: list[str] = []
    n_warn = 0
    with store.part_writer(key, libs) as writer:
        precheck_failed: dict[str, dict] = {}
        log: list[dict] = []
        for sample in samples:
            try:
                files = {**extractor.source_files(sample), **segmenter.source_files(sample)}
                missing = [str(p) for p in files.values() if not Path(p).is_file()]
                if missing:
                    raise ExtractionError(
                        f"sample {sample.sample_id!r}: file not found: {', '.join(missing)}")
                digest = store.hasher.combined(files, extractor.source_payload(sample))
            except (ExtractionError, OSError) as err:
                precheck_failed[sample.sample_id] = {}
                log.append(_record(sample, str(err), "error"))
                failed.append(sample.sample_id)
                continue
            sources[sample.sample_id] = {"hash": digest,
                                         "files": {r: str(p) for r, p in files.items()}}
            if cached.get(sample.sample_id) == digest:
                skipped += 1
            else:
                todo.append(sample)
        store.hasher.save()
        if precheck_failed:
            writer.write([], {}, precheck_failed, log)

        by_id = {s.sample_id: s for s in todo}
        if todo:
            extractor.check()
        size = chunk_size or auto_chunk_size(extractor, len(todo), n_jobs)
        chunks = _chunks(todo, size)
        results = (_run_dask(extractor, segmenter, chunks, n_jobs, scheduler) if executor == "dask"
                   else _run_local(extractor, segmenter, chunks, n_jobs))
        bar = tqdm(total=len(todo), desc=f"{extractor.name} [{dataset}/{key.stem}]", unit="sample",
                   disable=not progress or not todo, file=sys.stderr, leave=True,
                   mininterval=0.2 if sys.stderr.isatty() else 15.0)
        columns = None
        with bar:
            for out in results:
                if out.frame is not None:
                    if columns is None:
                        columns = out.frame.columns
                    elif not out.frame.columns.equals(columns):
                        msg = (f"{extractor.name} produced other columns for this sample than for "
                               f"the first ones ({len(out.frame.columns)} vs {len(columns)})")
                        out = ChunkOutcome(None, [], {**out.failed, **dict.fromkeys(out.done, msg)}, {})
                log = [_record(by_id[sid], msg, "error") for sid, msg in out.failed.items()]
                for sid, ws in out.warnings.items():
                    log.extend(_record(by_id[sid], w, "warning") for w in ws)
                    n_warn += len(ws)
                writer.write([out.frame] if out.frame is not None else [],
                             {sid: sources[sid] for sid in out.done}, dict.fromkeys(out.failed, {}), log)
                computed.extend(out.done)
                failed.extend(out.failed)
                bar.update(len(out.done) + len(out.failed))

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


def _record(sample: Sample, message: str, level: str) -> dict[str, str]:
    return {"sample_id": sample.sample_id,
            "source_path": str(next(iter(sample.media.values()), "")),
            "level": level, "error": message, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
