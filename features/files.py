"""Writing files so that nothing is ever left half written: a temporary file in the target's
folder, renamed onto the target once complete, with the permissions the user's umask gives a
new file (not the 0600 of a bare temporary file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_replace(write: Callable[[Path], object], path: Path) -> None:
    """Call `write(tmp_path)`, then rename the temporary file onto `path`.

    Raises:
        OSError: when the folder cannot be created or written (the target is left as it was).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    atomic_replace(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    atomic_replace(lambda tmp: tmp.write_bytes(data), path)


def replace_folder(write: Callable[[Path], object], path: Path) -> None:
    """Call `write(tmp_folder)`, then move the complete folder onto `path`: an earlier folder
    there is renamed aside and removed only once the new one is in place, so a reader (or a run
    killed while writing) finds the old folder or the new one, never a mix of the two.

    Raises:
        OSError: when the parent folder cannot be created or written (the target is left as it was).
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the earlier folder back
                os.replace(old / path.name, path)
                shutil.rmtree(old, ignore_errors=True)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
