"""Content-addressed Parquet feature store.

One Parquet file per (dataset, extractor, parameter hash) at
`{root}/{dataset}/{extractor}-{hash}.parquet`, rows indexed by `(sample_id, start, end)`.
The schema metadata records the extractor's name, version and parameters, the library
versions, and a hash of each sample's source files, so a re-run recomputes exactly the
samples whose sources or parameters changed. While a run is under way each finished sample
is written to `{stem}.parts/` at once, so an interrupted run loses nothing it finished;
the parts are folded into the one file at the end. Failed samples go to
`{stem}.errors.parquet`. Every write is a temporary file renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.base import INDEX

META_KEY = b"fusion.features"
PART_KEY = b"fusion.part"
FORMAT_VERSION = 1
ERROR_COLUMNS = ["sample_id", "source_path", "level", "error", "time"]


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


def _atomic_replace(write, path: Path) -> None:
    """Call `write(tmp_path)`, then rename the temporary file onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_table(table: pa.Table, path: Path) -> None:
    _atomic_replace(lambda tmp: pq.write_table(table, tmp), path)


def atomic_write_text(text: str, path: Path) -> None:
    _atomic_replace(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)


class SourceHasher:
    """File digests, cached by (path, size, mtime) in `{root}/.source-hashes.json`."""

    def __init__(self, cache_path: Path) -> None:
        self.cache_path = cache_path
        self._cache: dict[str, list] = {}
        self._dirty = False
        if cache_path.exists():
            try:
                self._cache = json.loads(cache_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._cache = {}  # a damaged cache only costs re-hashing

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

    def combined(self, files: Mapping[str, Path]) -> str:
        """One hash over a sample's source files, by role."""
        parts = {role: self.digest(p) for role, p in sorted(files.items())}
        return hashlib.blake2b(canonical_json(parts).encode(), digest_size=16).hexdigest()

    def save(self) -> None:
        if self._dirty:
            atomic_write_text(json.dumps(self._cache), self.cache_path)
            self._dirty = False


@dataclass(frozen=True)
class FeatureSetKey:
    """Identifies one feature file: (dataset, extractor, parameter hash)."""

    dataset: str
    extractor: str
    param_hash: str

    @property
    def stem(self) -> str:
        return f"{self.extractor}-{self.param_hash[:16]}"


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """Feature DataFrame indexed by (sample_id, start, end) → Arrow table, index as columns."""
    if list(frame.index.names) != INDEX:
        raise ValueError(f"feature frames must be indexed by {INDEX}, got {frame.index.names}")
    flat = frame.reset_index()
    flat["sample_id"] = flat["sample_id"].astype(str)
    return pa.Table.from_pandas(flat, preserve_index=False)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas().set_index(INDEX)


class FeatureStore:
    """The Parquet feature cache rooted at `root`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hasher = SourceHasher(self.root / ".source-hashes.json")

    # --- paths ---------------------------------------------------------------------------
    def path(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.parquet"

    def errors_path(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.errors.parquet"

    def parts_dir(self, key: FeatureSetKey) -> Path:
        return self.root / key.dataset / f"{key.stem}.parts"

    def _part_path(self, key: FeatureSetKey, sample_id: str, suffix: str) -> Path:
        name = hashlib.blake2b(sample_id.encode(), digest_size=10).hexdigest()
        return self.parts_dir(key) / f"{name}{suffix}"

    # --- reading -------------------------------------------------------------------------
    @staticmethod
    def read_metadata(path: str | Path) -> dict[str, Any]:
        """The store metadata of a feature file.

        Raises:
            ValueError: if the file is not a feature-store Parquet file.
        """
        schema = pq.read_schema(path)
        meta = schema.metadata or {}
        if META_KEY not in meta:
            raise ValueError(f"{path}: not a feature-store file (no {META_KEY.decode()} metadata)")
        return json.loads(meta[META_KEY])

    def read(self, what: FeatureSetKey | str | Path) -> pd.DataFrame:
        """Features of a key, a name as `fusion features ls` prints it, or a path."""
        path = self.path(what) if isinstance(what, FeatureSetKey) else self.resolve(what)
        return table_to_frame(pq.read_table(path))

    def read_errors(self, key: FeatureSetKey) -> pd.DataFrame:
        path = self.errors_path(key)
        if not path.exists():
            return pd.DataFrame(columns=ERROR_COLUMNS)
        return pq.read_table(path).to_pandas()

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
        exact = [e for label, e in labels.items() if name in (label, e.stem)]
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
        pf = pq.ParquetFile(path)
        errors_path = path.with_name(path.stem + ".errors.parquet")
        n_errors = pq.ParquetFile(errors_path).metadata.num_rows if errors_path.exists() else 0
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
            "size_bytes": path.stat().st_size,
            "created": meta["created"],
        }

    # --- incremental writing (used by features.runner) ----------------------------------
    def cached_sources(self, key: FeatureSetKey, library_versions: Mapping[str, str]
                       ) -> tuple[dict[str, str], list[str]]:
        """Source hashes of samples already computed for `key`, and notes on what was dropped.

        Samples in the consolidated file and in parts of an interrupted run both count; any
        computed with other library versions do not.
        """
        notes: list[str] = []
        cached: dict[str, str] = {}
        path = self.path(key)
        if path.exists():
            meta = self.read_metadata(path)
            if meta.get("library_versions") != dict(library_versions):
                notes.append(
                    f"{path.name}: library versions changed ({meta.get('library_versions')} → "
                    f"{dict(library_versions)}); recomputing every sample"
                )
            else:
                cached.update({sid: s["hash"] for sid, s in meta["sources"].items()})
        parts = self.parts_dir(key)
        if parts.exists():
            n = 0
            for part in parts.glob("*.parquet"):
                try:
                    info = json.loads(pq.read_schema(part).metadata[PART_KEY])
                except (OSError, KeyError, pa.ArrowInvalid, json.JSONDecodeError):
                    part.unlink(missing_ok=True)  # torn write from a killed run
                    continue
                if info["library_versions"] == dict(library_versions):
                    cached[info["sample_id"]] = info["hash"]
                    n += 1
            if n:
                notes.append(f"resuming: {n} sample(s) finished by an interrupted run")
        return cached, notes

    def write_part(self, key: FeatureSetKey, sample_id: str, frame: pd.DataFrame,
                   source_hash: str, files: Mapping[str, Path],
                   library_versions: Mapping[str, str]) -> None:
        table = frame_to_table(frame)
        info = {"sample_id": sample_id, "hash": source_hash,
                "files": {r: str(p) for r, p in files.items()},
                "library_versions": dict(library_versions)}
        table = table.replace_schema_metadata({PART_KEY: canonical_json(info)})
        atomic_write_table(table, self._part_path(key, sample_id, ".parquet"))
        self._part_path(key, sample_id, ".error.json").unlink(missing_ok=True)

    def write_error_part(self, key: FeatureSetKey, sample_id: str, source_path: str,
                         message: str, level: str = "error") -> None:
        """Record a failure (level "error") or a warning about a kept sample."""
        suffix = ".error.json" if level == "error" else ".warning.json"
        path = self._part_path(key, sample_id, suffix)
        records = []
        if level == "warning" and path.exists():
            records = json.loads(path.read_text(encoding="utf-8"))
        records.append({"sample_id": sample_id, "source_path": source_path, "level": level,
                        "error": message, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        atomic_write_text(json.dumps(records), path)
        if level == "error":
            self._part_path(key, sample_id, ".parquet").unlink(missing_ok=True)

    def consolidate(self, key: FeatureSetKey, meta: Mapping[str, Any],
                    attempted: Iterable[str]) -> Path:
        """Fold the parts into the feature file and the errors table, atomically.

        Args:
            meta: extractor name/version/params/segmentation/library versions for the file.
            attempted: sample ids this run tried; their old rows and old errors are replaced.
        """
        attempted = set(attempted)
        path, parts_dir = self.path(key), self.parts_dir(key)
        tables: list[pa.Table] = []
        sources: dict[str, Any] = {}
        part_files = sorted(parts_dir.glob("*.parquet")) if parts_dir.exists() else []
        fresh: dict[str, tuple[pa.Table, dict]] = {}
        for part in part_files:
            t = pq.read_table(part)
            info = json.loads(t.schema.metadata[PART_KEY])
            fresh[info["sample_id"]] = (t.replace_schema_metadata(None), info)
        failed = {json.loads(p.read_text(encoding="utf-8"))[0]["sample_id"]
                  for p in parts_dir.glob("*.error.json")} if parts_dir.exists() else set()
        if path.exists():
            old_meta = self.read_metadata(path)
            if old_meta.get("library_versions") == meta["library_versions"]:
                drop = set(fresh) | attempted | failed
                keep = [sid for sid in old_meta["sources"] if sid not in drop]
                if keep:
                    old = pq.read_table(path, filters=[("sample_id", "in", keep)])
                    tables.append(old.replace_schema_metadata(None))
                    sources.update({sid: old_meta["sources"][sid] for sid in keep})
        for sid, (t, info) in fresh.items():
            tables.append(t)
            sources[sid] = {"hash": info["hash"], "files": info["files"]}
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
        self._consolidate_errors(key, parts_dir, attempted)
        if parts_dir.exists():
            shutil.rmtree(parts_dir)
        self.hasher.save()
        return path

    def _consolidate_errors(self, key: FeatureSetKey, parts_dir: Path, attempted: set[str]) -> None:
        records: list[dict] = []
        old = self.read_errors(key)
        if len(old):
            records.extend(old[~old["sample_id"].isin(attempted)].to_dict("records"))
        if parts_dir.exists():
            for p in sorted(parts_dir.glob("*.json")):
                records.extend(json.loads(p.read_text(encoding="utf-8")))
        df = pd.DataFrame.from_records(records, columns=ERROR_COLUMNS).astype(str)
        schema = pa.schema([(c, pa.string()) for c in ERROR_COLUMNS])
        atomic_write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False),
                           self.errors_path(key))
