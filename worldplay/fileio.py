"""Atomic file writes for everything the user keeps (recordings, sessions, checkpoints).

Write to a temp file in the same directory, fsync, then rename over the target: a crash,
Ctrl-C or a full disk leaves either the old file or the new one, never a half-written one.
`atomic_path` does all of it around a block; `temp_beside` and `commit` are its two halves, for
writers that outlive a block (the mp4 recorder).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from worldplay.errors import WorldplayError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, with a clear message, if `path` cannot be written (before any work is done)."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise WorldplayError(f"output folder {parent} does not exist; create it or pick another --out")
    if not os.access(parent, os.W_OK):
        raise WorldplayError(f"output folder {parent} is not writable; pick another --out")
    if p.is_dir():
        raise WorldplayError(f"{p} is a folder; give a file name such as {p / 'out.mp4'}")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to `path`; on clean exit it replaces `path` atomically.

    On an exception the temp file is removed and the exception propagates (the existing
    `path`, if any, is untouched). `suffix` keeps the extension so format sniffers (PyAV) work.
    """
    p = check_writable(path)
    tmp_path = temp_beside(p, suffix)
    try:
        yield tmp_path
        commit(tmp_path, p)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise WorldplayError(f"disk full while writing {p}; free space and try again "
                                 f"(the previous {p.name}, if any, is untouched)") from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def temp_beside(p: Path, suffix: str | None = None) -> Path:
    """A new empty hidden file `.NAME.XXXX<suffix>` in p's folder: the same filesystem as `p`,
    so `commit` can rename it over `p` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix or p.suffix or ".tmp",
                               dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, p: Path) -> None:
    """Make the finished temp file `tmp` durable, give it a normal mode and rename it over `p`."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, final_mode(p))
    os.replace(tmp, p)


def final_mode(p: Path) -> int:
    """mkstemp makes owner-only files; give the result the mode a plain open() would
    (the existing file's mode, else 0o666 minus the umask)."""
    if p.exists():
        return p.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
