"""Content-addressed Parquet feature store.

One Parquet file per (dataset, extractor, parameter hash) at
`{root}/{dataset}/{extractor}-{hash}.parquet`, rows indexed by `(sample_id, start, end)`.
The schema metadata records the extractor's name, version and parameters, the library
versions, and a hash of each sample's source files, so a re-run recomputes exactly the
samples whose sources or parameters changed. While a run is under way each finished chunk
of samples is appended at once to `{stem}.parts/` (an Arrow IPC stream of rows and a JSON
journal that vouches for them), so an interrupted run loses nothing it finished; the parts
are folded into the one file at the end. Failed samples go to
`{stem}.errors.parquet`. Every write is a temporary file renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.base import INDEX
from features.files import atomic_replace, atomic_write_text

META_KEY = b"fusion.features"
LOCK_STALE_AFTER = 600.0  # seconds without a heartbeat after which another host's lock is stale
FORMAT_VERSION = 1
ERROR_COLUMNS = ["sample_id", "source_path", "level", "error", "time"]


class StoreError(OSError):
    """The store cannot be read or written as asked; the message names the file."""


class StoreLockedError(StoreError):
    """Another run holds the feature set's lock and did not release it in time."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def params_hash(extractor: str, version: str, params: Mapping[str, Any],
                segmentation: Mapping[str, Any]) -> str:
    """Hash of everything that determines an extractor's output apart from its inputs."""
    payload = {"extractor": extractor, "version": version, "params": dict(params),
               "segmentation": dict(segmentation)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_table(table: pa.Table, path: Path) -> None:
    atomic_replace(lambda tmp: pq.write_table(table, tmp), path)


class SourceHasher:
    """File digests, cached by (path, size, mtime) in `{root}/.source-hashes.json`."""

    def __init__(self, cache_path: Path) -> None:
        self.cache_path = cache_path
        self._cache: dict[str, list] = {}
        self._dirty = False
        self.problem: str | None = None  # what was wrong with the cache file, said once by the run
        if cache_path.exists():
            try:
                data = json.loads(cache_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
                data, why = None, f"not readable JSON ({type(err).__name__})"
            else:
                why = "not a mapping of file → [size, mtime, digest]"
            good = {k: v for k, v in data.items() if _hash_entry(v)} if isinstance(data, dict) else {}
            if not isinstance(data, dict) or len(good) < len(data):
                # a cache: a damaged one only costs re-hashing; it is rebuilt and said once
                bad = "" if not isinstance(data, dict) else f" ({len(data) - len(good)} damaged entries)"
                self.problem = (f"{cache_path}: the store's file-digest cache was damaged, {why}{bad}; it is "
                                "rebuilt (the files are hashed again)")
                self._dirty = True
            self._cache = good

    def digest(self, path: Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        key = str(path)
        hit = self._cache.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = file_digest(path)
        self._cache[key] = [st.st_size, st.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def combined(self, files: Mapping[str, Path], payload: str | None = None) -> str:
        """One hash over a sample's source files by role, plus any in-memory source text."""
        parts: dict[str, str] = {role: self.digest(p) for role, p in sorted(files.items())}
        if payload is not None:
            parts["<payload>"] = hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()
        return hashlib.blake2b(canonical_json(parts).encode(), digest_size=16).hexdigest()

    def save(self) -> None:
        """Persist the digests (a cache: where the store cannot be written, it is not kept)."""
        if self._dirty:
            try:
                atomic_write_text(json.dumps(self._cache), self.cache_path)
            except OSError:
                return
            self._dirty = False


def _hash_entry(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and not isinstance(x, bool) for x in v[:2])
            and isinstance(v[2], str))


# What a feature file's metadata must hold, and what each entry is.
META_FIELDS = {"dataset": str, "extractor": str, "extractor_version": str, "params": dict, "segmentation": dict,
               "param_hash": str, "library_versions": dict, "sources": dict, "created": str}


@dataclass(frozen=True)
class FeatureSetKey:
    """Identifies one feature file: (dataset, extractor, parameter hash), named after the
    feature set (`egemaps-<hash>`; the extractor's name when the set has none)."""

    dataset: str
    extractor: str
    param_hash: str
    name: str | None = None

    @property
    def stem(self) -> str:
        return f"{self.name or self.extractor}-{self.param_hash[:16]}"


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas().set_index(INDEX)


class FeatureStore:
    """The Parquet feature cache rooted at `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"feature store path {self.root} is a file, not a folder")
        self.hasher = SourceHasher(self.root / ".source-hashes.json")

    # --- paths ---------------------------------------------------------------------------
    def path(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.parquet"

    def same_hash_elsewhere(self, key: FeatureSetKey) -> Path | None:
        """A feature file of `key`'s parameter hash stored under another name (the extractor's
        name, as stores written before files were named after feature sets, or another
        feature set name for the same extractor and parameters), if one exists."""
        folder = self.root / key.dataset
        if not folder.is_dir():
            return None
        for path in sorted(folder.glob(f"*-{key.param_hash[:16]}.parquet")):
            if path != self.path(key) and not path.name.endswith(".errors.parquet"):
                try:
                    meta = self.read_metadata(path)
                except StoreError:
                    continue
                if meta.get("param_hash") == key.param_hash:
                    return path
        return None

    def adopt(self, key: FeatureSetKey) -> str | None:
        """Rename a file of `key`'s parameter hash stored under another name (with its errors
        table and parts folder) to `key`'s name, so that nothing is recomputed; the caller
        holds the key's lock. Returns a note saying what was renamed, or None."""
        if self.path(key).exists() or self.parts_dir(key).exists():
            return None
        other = self.same_hash_elsewhere(key)
        if other is None:
            return None
        old_stem = other.name.removesuffix(".parquet")
        for suffix, new in ((".errors.parquet", self.errors_path(key)), (".parts", self.parts_dir(key)),
                            (".parquet", self.path(key))):
            src = other.with_name(old_stem + suffix)
            if src.exists():
                os.replace(src, new)
        return f"renamed {key.dataset}/{old_stem} (same extractor and parameters) to {key.stem}"

    def locate(self, key: FeatureSetKey) -> Path:
        """The file holding `key`'s features: its own path, else a file of the same parameter
        hash under another name (read-only use; `adopt` renames it)."""
        path = self.path(key)
        if path.exists():
            return path
        return self.same_hash_elsewhere(key) or path

    def errors_path(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.errors.parquet"

    def parts_dir(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.parts"

    def lock_path(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.lock"

    def lock(self, key: FeatureSetKey, timeout: float = 3600.0, on_wait=None) -> FeatureSetLock:
        """The feature set's lock, held by one extraction run at a time (see `FeatureSetLock`)."""
        return FeatureSetLock(self.lock_path(key), timeout, on_wait)

    # --- reading -------------------------------------------------------------------------
    @staticmethod
    def read_metadata(path: str | Path) -> dict[str, Any]:
        """The store metadata of a feature file.

        Raises:
            ValueError: if the file is not a feature-store Parquet file.
        """
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"{path}: damaged or unreadable feature file ({err}); delete it and run "
                             "`fusion extract` again to recompute it") from None
        meta = schema.metadata or {}
        if META_KEY not in meta:
            raise StoreError(f"{path}: not a feature-store file (no {META_KEY.decode()} metadata)")
        try:
            info = json.loads(meta[META_KEY])
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(f"{path}: damaged store metadata (not JSON: {err}); run `fusion extract` again to "
                             "recompute the feature set") from None
        wrong = [k for k, t in META_FIELDS.items() if not isinstance(info, dict) or not isinstance(info.get(k), t)]
        if not wrong and not all(isinstance(v, dict) and isinstance(v.get("hash"), str)
                                 for v in info["sources"].values()):
            wrong = ["sources (each sample's {hash, files})"]
        if wrong:
            raise StoreError(f"{path}: damaged store metadata: {', '.join(wrong)} missing or of the wrong type; run "
                             "`fusion extract` again to recompute the feature set")
        return info

    def read(self, what: FeatureSetKey | str | Path) -> pd.DataFrame:
        """Features of a key, a name as `fusion features ls` prints it, or a path."""
        path = self.path(what) if isinstance(what, FeatureSetKey) else self.resolve(what)
        try:
            return table_to_frame(pq.read_table(path))
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"{path}: damaged or unreadable feature file ({err}); delete it and run "
                             "`fusion extract` again to recompute it") from None

    def read_errors(self, key: FeatureSetKey) -> pd.DataFrame:
        return read_errors_table(self.errors_path(key))

    def entries(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(
            p for p in self.root.glob("*/*.parquet")
            if not p.name.endswith(".errors.parquet")
        )

    def resolve(self, name: str | Path) -> Path:
        """Find a feature file by path, `dataset/stem`, stem, or a unique prefix of either.

        Raises:
            FileNotFoundError: listing what the store holds when nothing matches.
            ValueError: when the name is ambiguous.
        """
        p = Path(name)
        if p.suffix == ".parquet" and p.exists():
            return p
        name = str(name).removesuffix(".parquet")
        entries = self.entries()
        labels = {f"{e.parent.name}/{e.stem}": e for e in entries}
        exact = [e for label, e in labels.items()
                 if name in (label, e.stem, e.stem.rpartition("-")[0], label.rpartition("-")[0])]
        if len(exact) == 1:
            return exact[0]
        matches = exact or [e for label, e in labels.items()
                            if label.startswith(name) or e.stem.startswith(name)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            held = ", ".join(labels) or "nothing"
            raise FileNotFoundError(f"no feature set {name!r} in store {self.root} (it holds: {held})")
        raise ValueError(
            f"feature set name {name!r} is ambiguous in {self.root}: "
            + ", ".join(f"{e.parent.name}/{e.stem}" for e in matches)
        )

    def describe(self, path: Path) -> dict[str, Any]:
        """A summary of one feature file: shape, extractor, parameters, sources, errors."""
        meta = self.read_metadata(path)
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise StoreError(f"{path}: damaged or unreadable feature file ({err})") from None
        errors_path = path.with_name(path.stem + ".errors.parquet")
        errors_problem = None
        try:
            levels = read_errors_table(errors_path)["level"]
            n_errors, n_warnings = int((levels != "warning").sum()), int((levels == "warning").sum())
        except StoreError as err:
            n_errors = n_warnings = None
            errors_problem = str(err)
        return {
            "name": f"{path.parent.name}/{path.stem}",
            "path": str(path),
            "dataset": meta["dataset"],
            "extractor": meta["extractor"],
            "extractor_version": meta["extractor_version"],
            "params": meta["params"],
            "segmentation": meta["segmentation"],
            "param_hash": meta["param_hash"],
            "library_versions": meta["library_versions"],
            "n_samples": len(meta["sources"]),
            "n_rows": pf.metadata.num_rows,
            "n_features": pf.metadata.num_columns - len(INDEX),
            "n_errors": n_errors,
            "n_warnings": n_warnings,
            "errors_problem": errors_problem,
            "size_bytes": path.stat().st_size,
            "created": meta["created"],
        }

    # --- incremental writing (used by features.runner) ----------------------------------
    def cached_sources(self, key: FeatureSetKey, library_versions: Mapping[str, str]
                       ) -> tuple[dict[str, str], list[str]]:
        """Source hashes of samples already computed for `key`, and notes on what was dropped.

        Samples in the consolidated file and those finished by an interrupted run both count;
        any computed with other library versions do not.
        """
        notes: list[str] = []
        try:
            self.read_errors(key)
        except StoreError as err:
            notes.append(f"{err} (earlier runs' records of samples not extracted again are lost)")
        cached: dict[str, str] = {}
        path = self.path(key)
        meta = None
        if path.exists():
            try:
                meta = self.read_metadata(path)
            except StoreError as err:
                notes.append(f"{err}: it is ignored and every sample recomputed")
        if meta is not None:
            if meta.get("library_versions") != dict(library_versions):
                notes.append(
                    f"{path.name}: library versions changed ({meta.get('library_versions')} → "
                    f"{dict(library_versions)}); recomputing every sample"
                )
            else:
                cached.update({sid: s["hash"] for sid, s in meta["sources"].items()})
        journal = read_journal(self.parts_dir(key))
        if journal.torn:
            notes.append(f"{len(journal.torn)} sample(s) an interrupted run recorded as finished have no rows "
                         f"in its parts stream (cut short): recomputing {', '.join(sorted(journal.torn)[:5])}"
                         f"{' …' if len(journal.torn) > 5 else ''}")
        resumed = {sid: st["hash"] for sid, st in journal.latest.items()
                   if st["status"] == "done" and st["library_versions"] == dict(library_versions)}
        for sid in journal.latest:
            cached.pop(sid, None)
        cached.update(resumed)
        if resumed:
            notes.append(f"resuming: {len(resumed)} sample(s) finished by an interrupted run")
        return cached, notes

    def part_writer(self, key: FeatureSetKey, library_versions: Mapping[str, str]) -> PartWriter:
        return PartWriter(self.parts_dir(key), library_versions)

    def consolidate(self, key: FeatureSetKey, meta: Mapping[str, Any],
                    attempted: Iterable[str]) -> Path:
        """Fold the parts into the feature file and the errors table, atomically.

        Args:
            meta: extractor name/version/params/segmentation/library versions for the file.
            attempted: sample ids this run tried; their old rows and old errors are replaced.
        """
        attempted = set(attempted)
        path, parts_dir = self.path(key), self.parts_dir(key)
        journal = read_journal(parts_dir)
        libs = dict(meta["library_versions"])
        fresh = {sid: st for sid, st in journal.latest.items()
                 if st["status"] == "done" and st["library_versions"] == libs}
        tables: list[pa.Table] = []
        sources: dict[str, Any] = {}
        old_meta = None
        if path.exists():
            try:
                old_meta = self.read_metadata(path)
            except StoreError:
                old_meta = None  # damaged: replaced by what this run has (cached_sources said so)
        if old_meta is not None and old_meta.get("library_versions") == libs:
            drop = set(journal.latest) | attempted
            keep = [sid for sid in old_meta["sources"] if sid not in drop]
            if keep:
                old = pq.read_table(path, filters=[("sample_id", "in", keep)])
                tables.append(old.replace_schema_metadata(None))
                sources.update({sid: old_meta["sources"][sid] for sid in keep})
        for run, table in journal.tables.items():
            mine = [sid for sid, st in fresh.items() if st["run"] == run]
            if mine:
                tables.append(table.filter(pc.is_in(table["sample_id"], pa.array(mine, pa.string()))))
        for sid, st in fresh.items():
            sources[sid] = {"hash": st["hash"], "files": st["files"],
                            **({"digests": st["digests"]} if st.get("digests") else {})}
        if tables:
            table = pa.concat_tables(tables, promote_options="default")
            table = table.sort_by([(c, "ascending") for c in INDEX])
        else:
            table = pa.table({"sample_id": pa.array([], pa.string()),
                              "start": pa.array([], pa.float64()),
                              "end": pa.array([], pa.float64())})
        full_meta = {
            "format": FORMAT_VERSION,
            **meta,
            "param_hash": key.param_hash,
            "dataset": key.dataset,
            "sources": dict(sorted(sources.items())),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        table = table.replace_schema_metadata({META_KEY: canonical_json(full_meta)})
        atomic_write_table(table, path)
        self._consolidate_errors(key, journal, attempted)
        if parts_dir.exists():
            shutil.rmtree(parts_dir)
        self.hasher.save()
        return path

    def _consolidate_errors(self, key: FeatureSetKey, journal: Journal, attempted: set[str]) -> None:
        records: list[dict] = []
        try:
            old = self.read_errors(key)
        except StoreError:
            old = pd.DataFrame(columns=ERROR_COLUMNS)  # damaged: rebuilt from this run's records (said in the plan)
        if len(old):
            replaced = attempted | set(journal.latest)
            records.extend(old[~old["sample_id"].isin(replaced)].to_dict("records"))
        records.extend(journal.log)
        df = pd.DataFrame.from_records(records, columns=ERROR_COLUMNS).astype(str)
        schema = pa.schema([(c, pa.string()) for c in ERROR_COLUMNS])
        atomic_write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False),
                           self.errors_path(key))


def read_errors_table(path: Path) -> pd.DataFrame:
    """A feature set's errors table (empty when there is none).

    Raises:
        StoreError: a damaged table, naming it (not the feature file beside it).
    """
    if not path.exists():
        return pd.DataFrame(columns=ERROR_COLUMNS)
    try:
        table = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(f"{path}: damaged errors table ({err}); the next `fusion extract` of the feature set "
                         "rebuilds it") from None
    missing = [c for c in ERROR_COLUMNS if c not in table.columns]
    if missing:
        raise StoreError(f"{path}: damaged errors table (no column(s) {missing}); the next `fusion extract` of the "
                         "feature set rebuilds it")
    return table


def frames_to_batch(frames: list[pd.DataFrame]) -> pa.RecordBatch:
    """Feature frames with identical columns → one Arrow record batch (features as float32).

    Built from numpy column by column: far cheaper than pyarrow's pandas conversion for the
    wide frames (hundreds of columns) that embeddings and ComParE produce.
    """
    columns = list(frames[0].columns)
    for f in frames[1:]:
        if list(f.columns) != columns:
            raise ValueError("feature frames of one extractor must share their columns")
    ids = np.concatenate([f.index.get_level_values(0).to_numpy(dtype=object) for f in frames])
    starts = np.concatenate([f.index.get_level_values(1).to_numpy(dtype=np.float64) for f in frames])
    ends = np.concatenate([f.index.get_level_values(2).to_numpy(dtype=np.float64) for f in frames])
    values = np.ascontiguousarray(
        np.concatenate([f.to_numpy(dtype=np.float32) for f in frames]).T)
    arrays = [pa.array(ids.astype(str), pa.string()), pa.array(starts), pa.array(ends)]
    arrays.extend(pa.array(values[j]) for j in range(len(columns)))
    return pa.RecordBatch.from_arrays(arrays, names=INDEX + [str(c) for c in columns])


@dataclass
class Journal:
    """What interrupted runs left in a parts folder.

    Attributes:
        latest: sample id → its latest status ({"status": "done"|"failed", "run", "hash",
            "files", "library_versions"}), later runs overriding earlier ones.
        tables: run id → the rows that run wrote.
        log: error and warning records of each sample's latest run.
        torn: samples a journal line vouches for whose rows are missing from the run's stream
            (a stream cut short, e.g. by a crash before the disk had it all); they count as
            not done, so they are recomputed.
    """

    latest: dict[str, dict[str, Any]]
    tables: dict[str, pa.Table]
    log: list[dict[str, Any]]
    torn: list[str] = field(default_factory=list)


def read_journal(parts_dir: Path) -> Journal:
    """Read every run's journal (`*.jsonl`) and row stream (`*.arrows`) in a parts folder.

    A journal line is written only after its rows were flushed; a torn last line or a torn
    last batch (a killed run) is ignored. The journal and the streams are then checked against
    each other: a sample whose recorded row count is not in its run's stream is torn.
    """
    latest: dict[str, dict[str, Any]] = {}
    logs: dict[str, list[dict]] = {}
    tables: dict[str, pa.Table] = {}
    if not parts_dir.exists():
        return Journal(latest, tables, [])
    for jpath in sorted(parts_dir.glob("*.jsonl")):
        run = jpath.stem
        for line in jpath.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # torn tail of a killed run
            libs = entry.get("library_versions", {})
            for sid, info in entry.get("done", {}).items():
                latest[sid] = {"status": "done", "run": run, "library_versions": libs, **info}
                logs[sid] = []
            for sid in entry.get("failed", {}):
                latest[sid] = {"status": "failed", "run": run, "library_versions": libs}
                logs[sid] = []
            for rec in entry.get("log", []):
                logs.setdefault(rec["sample_id"], []).append(rec)
        spath = jpath.with_suffix(".arrows")
        if spath.exists():
            batches = []
            try:
                with pa.ipc.open_stream(pa.memory_map(str(spath))) as reader:
                    for batch in reader:
                        batches.append(batch)
            except (pa.ArrowInvalid, OSError):
                pass  # torn last batch: its samples have no journal line either
            if batches:
                tables[run] = pa.Table.from_batches(batches)
    counts = {run: pd.Series(t["sample_id"].to_numpy(zero_copy_only=False)).value_counts().to_dict()
              for run, t in tables.items()}
    torn = [sid for sid, st in latest.items()
            if st["status"] == "done" and counts.get(st["run"], {}).get(sid, 0) < st.get("rows", 1)]
    for sid in torn:
        del latest[sid]
        logs.pop(sid, None)
    log = [rec for recs in logs.values() for rec in recs]
    return Journal(latest, tables, log, torn)


class PartWriter:
    """Appends one run's finished chunks to `{run}.arrows` and records them in `{run}.jsonl`."""

    def __init__(self, parts_dir: Path, library_versions: Mapping[str, str]) -> None:
        parts_dir.mkdir(parents=True, exist_ok=True)
        self.run = f"{time.time_ns()}-{os.getpid()}"
        self.stream_path = parts_dir / f"{self.run}.arrows"
        self.journal_path = parts_dir / f"{self.run}.jsonl"
        self.libs = dict(library_versions)
        self._sink = None
        self._writer = None
        self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, frames: list[pd.DataFrame], done: Mapping[str, Mapping[str, Any]],
              failed: Mapping[str, Mapping[str, Any]], log: list[dict[str, Any]]) -> None:
        """Persist a chunk: rows first (flushed), then the journal line that vouches for them."""
        rows: dict[str, int] = {}
        for frame in frames:
            for sid, n in frame.index.get_level_values(0).value_counts().items():
                rows[str(sid)] = rows.get(str(sid), 0) + int(n)
        if frames:
            batch = frames_to_batch(frames)
            if self._writer is None:
                self._schema = batch.schema
                self._sink = pa.OSFile(str(self.stream_path), "wb")
                self._writer = pa.ipc.new_stream(self._sink, self._schema)
            elif batch.schema != self._schema:
                batch = batch.cast(self._schema)
            self._writer.write_batch(batch)
            self._sink.flush()
        entry = {"library_versions": self.libs,
                 "done": {sid: {**info, "rows": rows.get(sid, 0)} for sid, info in done.items()},
                 "failed": dict(failed), "log": log}
        self._journal.write(json.dumps(entry, default=str) + "\n")
        self._journal.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        self._journal.close()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FeatureSetLock:
    """A lock file that lets one extraction run at a time write a feature set.

    The file holds the owner's pid, host and start time, and its modification time is the
    owner's heartbeat (`beat()` after each chunk). A lock whose owner process no longer runs
    on this host, or another host's lock without a heartbeat for `LOCK_STALE_AFTER` seconds,
    is stale and taken over (with a note). Otherwise the run waits up to `timeout` seconds,
    calling `on_wait(message)` once, and then raises `StoreLockedError`.
    """

    def __init__(self, path: Path, timeout: float = 3600.0, on_wait=None) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.on_wait = on_wait
        self.notes: list[str] = []
        self._held = False

    def __enter__(self) -> FeatureSetLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self._owner()
                why = self._stale(owner)
                if why:
                    self.notes.append(f"took over a stale lock {self.path.name} ({why})")
                    self.path.unlink(missing_ok=True)
                    continue
                message = (f"{self.path}: this feature set is being extracted by pid {owner.get('pid')} on host "
                           f"{owner.get('host')} since {owner.get('started')}")
                if time.monotonic() >= deadline:
                    raise StoreLockedError(f"{message}; gave up after waiting {self.timeout:g} s (delete the "
                                           "lock file if that run is gone)") from None
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for the lock: {message}")
                    told = True
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            self._held = True
            return self

    def _owner(self) -> dict[str, Any]:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            owner["mtime"] = self.path.stat().st_mtime
            return owner if isinstance(owner, dict) else {}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}  # being written right now, or unreadable: judged again on the next try

    def _stale(self, owner: dict[str, Any]) -> str | None:
        if not owner:
            return None
        if owner.get("host") == socket.gethostname():
            try:
                os.kill(int(owner["pid"]), 0)
            except ProcessLookupError:
                return f"pid {owner.get('pid')} on this host is not running"
            except (PermissionError, ValueError, KeyError, TypeError):
                return None
            return None
        if time.time() - owner.get("mtime", time.time()) > LOCK_STALE_AFTER:
            return f"no heartbeat from host {owner.get('host')} for over {LOCK_STALE_AFTER:g} s"
        return None

    def beat(self) -> None:
        """Refresh the heartbeat (the lock file's modification time)."""
        if self._held:
            os.utime(self.path)

    def __exit__(self, *exc) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
