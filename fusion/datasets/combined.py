"""Several corpora loaded as one, with subjects shared across them.

DAIC-WOZ and E-DAIC share participants 300–492. Both adapters use the bare participant id
as subject id, so in a combined dataset the same person's sessions form one subject group
and can never be split across train and test. Sample ids are prefixed with the corpus name.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from features.base import Params, Sample
from fusion.datasets.base import DATASETS, DatasetAdapter, DatasetError, decode


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
        samples = self._harmonise(samples, members)
        shared = sorted(sid for sid, names in by_subject.items() if len(names) > 1)
        if shared:
            self.problems.append(
                f"{len(shared)} subject(s) appear in more than one corpus (e.g. {shared[:5]}); "
                "each is kept as one subject group, so splits never separate them")
        return samples

    def _harmonise(self, samples: list[Sample], members: list[DatasetAdapter]) -> list[Sample]:
        """A label coded as numbers in one corpus and as text in another (DAIC-WOZ's Gender
        0/1, E-DAIC's male/female) is kept as text in every sample: a corpus whose codebook
        documents the codes contributes their meanings (DAIC-WOZ's 0 → female), another its
        codes as text, which the note names (they are not mapped onto each other)."""
        from dataclasses import replace

        kinds: dict[str, dict[str, str]] = {}
        for member in members:
            for s in member.samples():
                for col, v in s.labels.items():
                    if v is None or (isinstance(v, float) and v != v):
                        continue
                    kind = "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else "text"
                    kinds.setdefault(col, {}).setdefault(member.name, kind)
        mixed = sorted(col for col, by in kinds.items() if len(set(by.values())) > 1)
        for col in mixed:
            by = kinds[col]
            uncoded = ", ".join(n for n, k in by.items() if k == "number" and col not in DATASETS.get(n).codebook)
            texts = ", ".join(n for n, k in by.items() if k == "text")
            if uncoded:
                self.problems.append(f"label {col!r} is a number in {uncoded} and text in {texts}, and no codebook "
                                     "says what the numbers mean; kept as text values, not mapped onto each other")
        if not mixed:
            return samples
        books = {m.name: m.codebook for m in members}

        def text(member: str, col: str, v):
            return decode(books.get(member, {}), col, v)

        return [replace(s, labels={k: (text(s.sample_id.split(":", 1)[0], k, v) if k in mixed and v is not None
                                       else v) for k, v in s.labels.items()}) for s in samples]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["members"] = [m.describe() for m in self._members]
        return out
