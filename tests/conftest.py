"""Shared fixtures: a small demo corpus, real-data locations, and safe defaults."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing may be fetched from a model hub during tests; plots render off-screen.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def demo_corpus_master(tmp_path_factory) -> Path:
    """A 6-session demo corpus (generated once per test session; copy it before changing it)."""
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    root = tmp_path_factory.mktemp("demo_master") / "demo"
    generate_demo_corpus(root, n_sessions=6, seed=7, questions=3)
    return root


@pytest.fixture
def demo_corpus(demo_corpus_master, tmp_path) -> Path:
    """A private copy of the small demo corpus that a test may damage."""
    dest = tmp_path / "demo"
    shutil.copytree(demo_corpus_master, dest)
    return dest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data folder ($AFFECT_SHARED_DATA); skips when it is not configured."""
    value = os.environ.get("AFFECT_SHARED_DATA")
    if not value:
        pytest.skip("AFFECT_SHARED_DATA is not set: the real-data tests need ../shared/data")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"AFFECT_SHARED_DATA={value} is not a folder")
    return path.resolve()  # absolute: tests link to it from their own folders


@pytest.fixture(scope="session")
def severity_corpus(tmp_path_factory):
    """24 demo sessions with the severity model's session-level features extracted."""
    from fusion.cli import main
    from fusion.synthetic.demo_corpus import generate_demo_corpus

    root_dir = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("severity")
    root, _ = generate_demo_corpus(base / "demo", n_sessions=24, seed=3, questions=3)
    assert main(["extract", "--config", str(root_dir / "configs/extract/demo_multimodal.yaml"),
                 "--set", f"dataset.root={root}", "--set", f"store={base / 'store'}", "--set", "progress=false",
                 "--only", "logmel_session", "--only", "text_session", "--only", "face_session",
                 "--only", "text_transcript"]) == 0
    return root, base / "store"
