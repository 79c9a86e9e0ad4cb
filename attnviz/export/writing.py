"""Writing export files safely, in one place: checked before any work, written to a temporary file in the
same folder and then moved to the target, never overwriting an existing file unless asked, and leaving
nothing behind when writing fails. Errors are OSError/ValueError whose message names the file and the
reason. Every writer of attnviz.export (arrays, figures, animations, view files) goes through
:func:`write_atomic`."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

FORMATS = (".png", ".svg", ".pdf", ".gif", ".mp4", ".npz", ".json")


class ExistsError(FileExistsError):
    """The output exists and overwriting was not allowed."""


def format_of(path: str | os.PathLike) -> str:
    """The export format from the file name's suffix ('.png', ...); ValueError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format '{suffix or '(no suffix)'}' (use one of {' '.join(FORMATS)})")
    return suffix


def check_output(path: str | os.PathLike) -> Path:
    """Raise OSError with a plain message unless a file can be written at ``path``; checked before
    any work so that a wrong output path fails at once. Returns the folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OSError(f"{path} is a folder; give a file name, e.g. {path / 'attention.npz'}")
    if not parent.exists():
        raise OSError(f"{path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OSError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"{path}: no permission to write in folder {parent}")
    return parent


def check_target(path: str | os.PathLike, force: bool = False) -> Path:
    """Raise unless ``path`` can be written: its folder exists and is writable, it is not a folder, and it
    does not exist yet (or ``force``). Returns the folder."""
    parent = check_output(path)
    if Path(path).exists() and not force:
        raise _exists(path)
    return parent


def _exists(path) -> ExistsError:
    return ExistsError(f"{path}: the file exists (use --force to overwrite it)")


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (other threads may be creating
    files); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: str | os.PathLike, force: bool) -> None:
    """Move the finished ``tmp`` to ``path``. Without ``force`` this is a hard link, which the system
    refuses when ``path`` exists (no window between a check and the rename: a file that appeared while
    we worked is never replaced), then the temporary name is removed. Where the file system has no hard
    links, an exclusive create-and-rename is the fallback."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as e:
        if e.errno is None or e.errno not in _NO_LINKS:
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError when it appeared
        os.close(fd)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


# errors of a file system without hard links (FAT, some network shares)
_NO_LINKS = {getattr(errno, n) for n in ("EPERM", "EOPNOTSUPP", "ENOTSUP", "EXDEV", "EMLINK") if hasattr(errno, n)}


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], force: bool = False) -> None:
    """Call ``write(tmp_path)`` to make the file under a temporary name beside ``path``, then move it to
    ``path`` (replacing an existing file only with ``force``). If anything fails, the temporary file is
    removed and the target is untouched. The file gets the permissions a new file gets under the umask."""
    parent = check_target(path, force)
    suffix = Path(path).suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=".attnviz-", suffix=f"{suffix}.part{suffix}", dir=parent)
    except OSError as e:
        raise OSError(f"{path}: cannot write in folder {parent} ({(e.strerror or str(e)).lower()})") from e
    os.close(fd)
    try:
        write(tmp)
        if not os.path.exists(tmp) or os.path.getsize(tmp) == 0:
            raise OSError(f"{path}: nothing was written")
        os.chmod(tmp, 0o666 & ~_umask())
        _publish(tmp, path, force)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, FileExistsError) and not isinstance(e, ExistsError):
            raise _exists(path) from None
        if isinstance(e, OSError) and not isinstance(e, ExistsError) and e.strerror and str(path) not in str(e):
            raise OSError(f"{path}: could not write the file ({e.strerror.lower()})") from e
        raise


def write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomic(path, write, force)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], force: bool = False) -> None:
    """The named arrays as an uncompressed .npz, atomically (a reader never sees a half-written file)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write, force)
