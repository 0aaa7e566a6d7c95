"""Run the notebooks top to bottom (`make notebooks`) and save executed copies, with their
outputs and figures, under notebooks/work/ (or $FUSION_NOTEBOOK_DIR); print each one's time.

The notebooks in this folder stay without outputs; open the executed copies, or the
notebooks themselves in any Jupyter front end (`pip install jupyterlab` into .venv).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main() -> int:
    work = Path(os.environ.get("FUSION_NOTEBOOK_DIR", HERE / "work")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for path in sorted(HERE.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        out = work / path.name
        nbformat.write(nb, out)
        print(f"{path.name}: {time.perf_counter() - t0:.0f} s → {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
