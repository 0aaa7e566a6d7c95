"""Run one extractor over a dataset's samples into the feature store: parallel and resumable.

Each sample is hashed (its source files by content), skipped when the store already has it
with the same hash and parameters, and otherwise computed. Work goes to the workers in
chunks of samples; each finished chunk comes back to this process, which alone writes the
store, appending the chunk at once so that an interrupted run keeps it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm import tqdm  # text on stderr, in a terminal and a notebook alike (no widget)

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
    """One chunk's result: the rows of its good samples, and what failed (message and the
    file that failed) or was warned about."""

    frame: pd.DataFrame | None
    done: list[str]
    failed: dict[str, str]
    warnings: dict[str, list[str]]
    failed_paths: dict[str, str] = field(default_factory=dict)


def feature_set_key(dataset: str, extractor: Extractor, segmenter: Segmenter,
                    name: str | None = None) -> FeatureSetKey:
    """The store key of `extractor` + `segmenter` on `dataset`; the file is named after the
    feature set `name` (the extractor's name when None). The name is not hashed: two names
    for the same extractor and parameters share one computation (`FeatureStore.adopt`)."""
    digest = params_hash(extractor.name, extractor.version, extractor.get_params(),
                         segmenter.config.model_dump(mode="json"))
    return FeatureSetKey(dataset, extractor.name, digest, name)


def _describe(err: BaseException) -> str:
    if isinstance(err, ExtractionError):
        return str(err)
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(err).__name__}: {err}{at}"


def source_path(extractor: Extractor, sample: Sample, err: BaseException | None = None) -> str:
    """The file an error or warning is about: the one the error names, else the first file the
    extractor reads for the sample (not merely the sample's first media file)."""
    if err is not None and getattr(err, "path", None):
        return str(err.path)
    try:
        return str(next(iter(extractor.source_files(sample).values())))
    except (ExtractionError, StopIteration):
        return str(next(iter(sample.media.values()), ""))


def process_chunk(extractor: Extractor, segmenter: Segmenter,
                  samples: Sequence[Sample]) -> ChunkOutcome:
    """Segment and extract a chunk of samples; every failure becomes a recorded error.

    Samples without rows are failures; NaN or inf values are kept (never filled) and
    reported as warnings of their sample.
    """
    failed: dict[str, str] = {}
    paths: dict[str, str] = {}
    warnings: dict[str, list[str]] = {}
    items = []
    by_id = {s.sample_id: s for s in samples}
    for sample in samples:
        try:
            seg = segmenter.segment(sample)
            if seg.segments is not None and not seg.segments:
                raise ExtractionError(f"sample {sample.sample_id!r}: segmentation produced no segments",
                                      sample.media.get("transcript"))
            items.append((sample, seg.segments))
            warnings[sample.sample_id] = list(seg.warnings)
        except Exception as err:  # noqa: BLE001 - batch work: record the bad item, keep the rest
            failed[sample.sample_id] = _describe(err)
            paths[sample.sample_id] = source_path(extractor, sample, err)
    batch = extractor.process_samples(items) if items else BatchResult(None, {}, {})
    for sid, err in batch.errors.items():
        failed[sid] = _describe(err)
        paths[sid] = source_path(extractor, by_id[sid], err)
    for sid, ws in batch.warnings.items():
        warnings.setdefault(sid, []).extend(ws)
    frame = batch.frame
    ids = frame.index.get_level_values(0) if frame is not None else pd.Index([])
    present = set(ids.unique())
    for sample, _ in items:
        sid = sample.sample_id
        if sid not in failed and sid not in present:
            failed[sid] = f"sample {sid!r}: {extractor.name} produced no rows"
            paths[sid] = source_path(extractor, sample)
    if frame is not None and not extractor.nan_is_padding:
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
                        {sid: w for sid, w in warnings.items() if w and sid not in failed}, paths)


_WATCHED = False


def _exit_with_parent(parent: int | None = None) -> None:
    """In a worker process: exit as soon as the process that started it (`parent`, by default
    the current parent) is gone, so that no orphan keeps computing for a run that no longer
    exists."""
    global _WATCHED
    if _WATCHED:
        return
    _WATCHED = True
    parent = parent or os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_chunk(extractor: Extractor, segmenter: Segmenter, samples: Sequence[Sample]) -> ChunkOutcome:
    """`process_chunk` run in a Dask worker process."""
    _exit_with_parent()
    return process_chunk(extractor, segmenter, samples)


def _chunks(samples: Sequence[Sample], size: int) -> list[list[Sample]]:
    return [list(samples[i:i + size]) for i in range(0, len(samples), size)]


def _run_local(extractor: Extractor, segmenter: Segmenter, chunks: list[list[Sample]],
               n_jobs: int) -> Iterator[ChunkOutcome]:
    if n_jobs == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield process_chunk(extractor, segmenter, chunk)
        return
    from concurrent.futures import as_completed

    with worker_pool(min(n_jobs, len(chunks))) as executor:
        futures = [executor.submit(process_chunk, extractor, segmenter, c) for c in chunks]
        for future in as_completed(futures):
            yield future.result()


@contextlib.contextmanager
def worker_pool(n_jobs: int) -> Iterator:
    """A pool of `n_jobs` worker processes, shut down on exit, whose workers watch their
    parent from the moment they start (not only once they have work), so that a killed run
    leaves no worker behind. (joblib's shared pool cannot take such an initializer.)"""
    from joblib.externals.loky import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


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
        futures = [client.submit(worker_chunk, ext, segr, c, pure=False) for c in chunks]
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


@dataclass
class Plan:
    """What a run has to do: each sample's source hash and files, the samples to compute, how
    many are cached, and the samples that failed before extraction (missing files)."""

    sources: dict[str, dict[str, Any]]
    todo: list[Sample]
    skipped: int
    failed: list[str]
    log: list[dict]
    notes: list[str]


def plan_run(samples: Sequence[Sample], extractor: Extractor, segmenter: Segmenter, store: FeatureStore,
             key: FeatureSetKey, libs: dict[str, str]) -> Plan:
    """Hash each sample's sources and compare with what the store holds (reads only)."""
    cached, notes = store.cached_sources(key, libs)
    plan = Plan({}, [], 0, [], [], notes)
    for sample in samples:
        try:
            files = {**extractor.source_files(sample), **segmenter.source_files(sample)}
            missing = [str(p) for p in files.values() if not Path(p).is_file()]
            if missing:
                raise ExtractionError(f"sample {sample.sample_id!r}: file not found: {', '.join(missing)}",
                                      missing[0])
            digest = store.hasher.combined(files, extractor.source_payload(sample))
        except (ExtractionError, OSError) as err:
            plan.log.append(_record(sample, str(err), "error", source_path(extractor, sample, err)))
            plan.failed.append(sample.sample_id)
            continue
        plan.sources[sample.sample_id] = {"hash": digest, "files": {r: str(p) for r, p in files.items()},
                                          "digests": {r: store.hasher.digest(p) for r, p in files.items()}}
        if cached.get(sample.sample_id) == digest:
            plan.skipped += 1
        else:
            plan.todo.append(sample)
    return plan


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
    lock_timeout: float = 3600.0,
    name: str | None = None,
) -> ExtractionSummary:
    """Extract `extractor` features for `samples` into `store`, reusing what is cached.

    A run that finds every sample cached writes nothing (a read-only store is fine). Otherwise
    it holds the feature set's lock while it computes and writes, so that two runs on one
    store never lose each other's samples: the second waits (up to `lock_timeout` seconds,
    saying whom it waits for) and then computes only what the first did not.

    Args:
        dataset: dataset name; the store keeps one folder per dataset.
        n_jobs: worker processes (local) or workers of a local Dask cluster.
        executor: "local" (joblib processes) or "dask" (a Dask cluster; `scheduler` is its
            address, or None for a local cluster of `n_jobs` workers).
        chunk_size: samples per task (None: see `auto_chunk_size`).
        name: the feature set's name, which names its file (`egemaps-<hash>.parquet`).

    Returns:
        A summary with counts of computed, skipped (cached) and failed samples.

    Raises:
        StoreLockedError: another run held the lock for longer than `lock_timeout`.
    """
    t0 = time.perf_counter()
    segmenter = segmenter or Segmenter()
    key = feature_set_key(dataset, extractor, segmenter, name)
    libs = extractor.library_versions()
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"dataset {dataset!r} has duplicated sample ids: {dup[:5]}")

    plan = plan_run(samples, extractor, segmenter, store, key, libs)
    said = [store.hasher.problem] if store.hasher.problem else []  # said once, by the first feature set
    store.hasher.problem = None
    if (not plan.todo and not plan.failed and store.path(key).exists()
            and not store.parts_dir(key).exists() and not plan.notes):
        plan.notes[:0] = said
        store.hasher.save()
        return _summary(dataset, key, store, samples, plan, [], 0, t0)

    def tell(message: str) -> None:
        print(f"{extractor.name} [{dataset}/{key.stem}]: {message}", file=sys.stderr, flush=True)

    with store.lock(key, lock_timeout, on_wait=tell) as lock:
        adopted = store.adopt(key)
        plan = plan_run(samples, extractor, segmenter, store, key, libs)  # what another run left to do
        plan.notes[:0] = said + lock.notes + ([adopted] if adopted else [])
        store.hasher.save()
        computed, n_warn = _compute(plan, extractor, segmenter, store, key, libs, lock, n_jobs, executor,
                                    scheduler, chunk_size, progress, dataset)
        meta = {
            "extractor": extractor.name,
            "extractor_version": extractor.version,
            "params": extractor.get_params(),
            "segmentation": segmenter.config.model_dump(mode="json"),
            "library_versions": libs,
            "feature_names": extractor.feature_names,
        }
        todo_ids = {s.sample_id for s in plan.todo}
        attempted = list(todo_ids) + [sid for sid in plan.failed if sid not in todo_ids]
        store.consolidate(key, meta, attempted)
    return _summary(dataset, key, store, samples, plan, computed, n_warn, t0)


def _compute(plan: Plan, extractor: Extractor, segmenter: Segmenter, store: FeatureStore, key: FeatureSetKey,
             libs: dict[str, str], lock, n_jobs: int, executor: str, scheduler: str | None,
             chunk_size: int | None, progress: bool, dataset: str) -> tuple[list[str], int]:
    """Compute `plan.todo` chunk by chunk, appending each finished chunk to the parts stream."""
    computed: list[str] = []
    n_warn = 0
    with store.part_writer(key, libs) as writer:
        if plan.failed:
            writer.write([], {}, dict.fromkeys(plan.failed, {}), plan.log)
        todo = plan.todo
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
                        out = ChunkOutcome(None, [], {**out.failed, **dict.fromkeys(out.done, msg)}, {},
                                           out.failed_paths)
                log = [_record(by_id[sid], msg, "error",
                               out.failed_paths.get(sid) or source_path(extractor, by_id[sid]))
                       for sid, msg in out.failed.items()]
                for sid, ws in out.warnings.items():
                    log.extend(_record(by_id[sid], w, "warning", source_path(extractor, by_id[sid])) for w in ws)
                    n_warn += len(ws)
                writer.write([out.frame] if out.frame is not None else [],
                             {sid: plan.sources[sid] for sid in out.done}, dict.fromkeys(out.failed, {}), log)
                lock.beat()
                computed.extend(out.done)
                plan.failed.extend(out.failed)
                bar.update(len(out.done) + len(out.failed))
    return computed, n_warn


def _summary(dataset: str, key: FeatureSetKey, store: FeatureStore, samples: Sequence[Sample], plan: Plan,
             computed: list[str], n_warn: int, t0: float) -> ExtractionSummary:
    return ExtractionSummary(
        feature_set=f"{dataset}/{key.stem}",
        path=str(store.path(key)),
        errors_path=str(store.errors_path(key)),
        n_samples=len(samples),
        computed=len(computed),
        skipped=plan.skipped,
        failed=len(plan.failed),
        warnings=n_warn,
        seconds=round(time.perf_counter() - t0, 3),
        notes=plan.notes,
        computed_ids=sorted(computed),
        failed_ids=sorted(plan.failed),
    )


def _record(sample: Sample, message: str, level: str, path: str) -> dict[str, str]:
    return {"sample_id": sample.sample_id, "source_path": path, "level": level, "error": message,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
