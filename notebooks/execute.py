"""Run the notebooks top to bottom (`make notebooks`) and save executed copies, with their
outputs and figures, under notebooks/work/ (or $FUSION_NOTEBOOK_DIR); print each one's time.

The notebooks in this folder stay without outputs; open the executed copies, or the
notebooks themselves in any Jupyter front end (`pip install jupyterlab` into .venv).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """The notebook at `path`, run top to bottom in its own folder, with its outputs."""
    nb = nbformat.read(path, as_version=4)
    # IPC transport: a local kernel needs no TCP ports (and so prints no warning about them); the
    # sockets' absolute path, since the kernel runs in the notebook's folder
    with tempfile.TemporaryDirectory(prefix="fusion-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main() -> int:
    work = Path(os.environ.get("FUSION_NOTEBOOK_DIR", HERE / "work")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for path in sorted(HERE.glob("*.ipynb")):
        t0 = time.perf_counter()
        nb = execute(path)
        out = work / path.name
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
        print(f"{path.name}: {time.perf_counter() - t0:.0f} s → {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
