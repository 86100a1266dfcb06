"""Files written whole or not at all: a temporary file beside the target, flushed to the disk
and renamed (checkpoints, reports, figures, sidecars, mosaics, exported models).

Kept free of torch so light modules (raster sidecars, the CLI) can use it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from geoidec.errors import DataError

__all__ = ["atomic_write", "file_digest", "fsync_file", "refuse_existing", "write_error",
           "write_json", "write_text"]

_UMASK = os.umask(0)
os.umask(_UMASK)

#: errno values that mean "this location cannot be written" (reported in one line).
_WRITE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT,
                 errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EFBIG}


def refuse_existing(*paths: Path | None, overwrite: bool = False) -> None:
    """A one-line ``FileExistsError`` for the first of ``paths`` that exists, unless
    ``overwrite`` (``None`` entries are skipped): outputs are never replaced silently."""
    if overwrite:
        return
    for path in paths:
        if path is not None and Path(path).exists():
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def write_error(path: Path, exc: OSError) -> DataError | OSError:
    """A one-line :class:`DataError` naming ``path`` for full disks, missing permissions and
    the like; other OS errors unchanged."""
    if exc.errno in _WRITE_ERRORS:
        reason = exc.strerror or str(exc)
        hint = " (disk full: free some space)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return DataError(f"cannot write {path}: {reason}{hint}")
    return exc


def fsync_file(path: Path) -> None:
    """Flush a written file to the disk (a rename after this survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any, suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; no partial file ever has its name.

    The temporary file sits beside ``path`` (same file system, so the rename is atomic) and is
    flushed to the disk before the rename; it is removed on any failure. A full disk or a
    missing permission is a one-line :class:`DataError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".partial",
                                   dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        write(Path(tmp))
        fsync_file(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise write_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_text(path: Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> Path:
    """Atomically write JSON (indented, NaN-free)."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (a parent checkpoint's identity)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()
