"""Several corpora loaded as one, with subjects shared across them.

DAIC-WOZ and E-DAIC share participants 300–492. Both adapters use the bare participant id
as subject id, so in a combined dataset the same person's sessions form one subject group
and can never be split across train and test. Sample ids are prefixed with the corpus name.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError


class CombinedParams(Params):
    datasets: list[dict[str, Any]] = Field(min_length=2)


@DATASETS.register("combined")
class Combined(DatasetAdapter):
    """`params.datasets`: a list of {name, root, params} specs, loaded and concatenated."""

    name = "combined"
    Params = CombinedParams

    def _load(self) -> list[Sample]:
        from dataclasses import replace
        from pathlib import Path

        samples: list[Sample] = []
        members = []
        by_subject: dict[str, set[str]] = {}
        for spec in self.params.datasets:
            unknown = set(spec) - {"name", "root", "params"}
            if unknown or "name" not in spec or "root" not in spec:
                raise DatasetError(f"combined: each dataset needs name and root (and optional params); "
                                   f"got keys {sorted(spec)}")
            adapter = DATASETS.get(spec["name"])(Path(spec["root"]), **spec.get("params", {}))
            members.append(adapter)
            for s in adapter.samples():
                samples.append(replace(s, sample_id=f"{spec['name']}:{s.sample_id}"))
                by_subject.setdefault(s.subject_id, set()).add(spec["name"])
            self.problems.extend(f"{spec['name']}: {p}" for p in adapter.problems
                                 if f"{spec['name']}: {p}" not in self.problems)
        self._members = members
        shared = sorted(sid for sid, names in by_subject.items() if len(names) > 1)
        if shared:
            self.problems.append(
                f"{len(shared)} subject(s) appear in more than one corpus (e.g. {shared[:5]}); "
                "each is kept as one subject group, so splits never separate them")
        return samples

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["members"] = [m.describe() for m in self._members]
        return out
