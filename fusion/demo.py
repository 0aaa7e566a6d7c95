"""`fusion demo`: synthetic DAIC-WOZ-layout corpus → features → baseline → MLflow."""

from __future__ import annotations

import time
from typing import Any

from fusion.config.schema import DemoConfig
from fusion.extraction import extract
from fusion.synthetic.demo_corpus import generate_demo_corpus
from fusion.training import train


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Generate the corpus (into the extract config's dataset root), extract, train."""
    t0 = time.perf_counter()
    c = cfg.corpus
    root, reused = generate_demo_corpus(
        cfg.extract.dataset.root, n_sessions=c.n_sessions, seed=c.seed, questions=c.questions,
        dev_fraction=c.dev_fraction, n_jobs=cfg.extract.n_jobs)
    t_corpus = time.perf_counter() - t0
    extracted = extract(cfg.extract)
    train_cfg = cfg.train.model_copy(update={"extract": cfg.extract})
    trained = train(train_cfg)
    first = sorted(p.name.removesuffix("_P") for p in root.glob("*_P"))[:1]
    return {"corpus": {"root": str(root), "n_sessions": c.n_sessions, "seed": c.seed,
                       "seconds": round(t_corpus, 3), "reused": reused,
                       "first_participant": first[0] if first else None},
            "extract": extracted, "train": trained,
            "seconds": round(time.perf_counter() - t0, 3)}
