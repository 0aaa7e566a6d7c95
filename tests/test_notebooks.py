"""The notebooks run top to bottom on the demo corpus (nbclient), and are stored without outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    import nbformat

    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_sweep_and_compare.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.slow
def test_notebooks_execute_in_order(tmp_path, monkeypatch, capfd):
    pytest.importorskip("ipykernel", reason="ipykernel (test extra) runs the notebooks")
    spec = importlib.util.spec_from_file_location("execute", NOTEBOOKS[0].parent / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)  # what `make notebooks` runs

    monkeypatch.setenv("FUSION_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("FUSION_DEMO_DIR", str(tmp_path / "shared"))  # `make demo`'s corpus and store, here empty
    for path in NOTEBOOKS:
        nb = execute.execute(path, timeout=600)
        images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                  if "image/png" in o.get("data", {})]
        assert images, f"{path.name} shows no figure"
        streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                          if o.get("output_type") == "stream")
        for flood in ("TqdmWarning", "IProgress", "Warning:"):  # progress as text, no warning floods
            assert flood not in streams, (path.name, flood)
    assert "WARNING" not in capfd.readouterr().err  # the kernel's own start-up says nothing either
    assert (tmp_path / "compare_sweep" / "compare.md").is_file()  # written where the notebooks were told
    assert (tmp_path / "outputs" / "sweeps" / "demo_baseline" / "best.yaml").is_file()
    # the demo corpus and features are `make demo`'s: generated once, under FUSION_DEMO_DIR, and linked
    assert (tmp_path / "shared" / "data" / "demo" / "demo_corpus.json").is_file()
    assert (tmp_path / "data" / "demo").is_symlink() and any((tmp_path / "shared" / "features_store").rglob("*.parquet"))
