"""Writing outputs so that a kill, a crash or a full disk never leaves a half-written file under its final name.

Every file is written to a hidden temporary name beside its destination, flushed to disk, then renamed over
the destination in one step (``os.replace`` is atomic on one file system). A reader sees the old file or the
new one, never a mix; an interrupted write leaves at most a hidden ``.<name>.partial-<pid>`` file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rt4ksr.core.errors import UserError

# errors that mean "no room": a full disk, a quota, or a file-size limit (ulimit -f)
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# errors that mean "this location cannot be written"
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


class NoSpaceError(UserError, OSError):
    """The disk (or a quota, or a file-size limit) ran out while writing; the message names the file."""


class OutputNotWritableError(UserError, OSError):
    """An output location that cannot be written: a read-only or missing folder, a file where a folder is
    needed, a folder where a file is; the message names the path and the reason."""


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is a file, not a folder (``one.png`` in ``one.png/x.png``)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def cannot_write(path: str | Path, e: OSError | None = None) -> OutputNotWritableError:
    """The one-line error for an output that cannot be written, with the reason in words."""
    path = Path(path)
    blocker = _blocking_file(path)
    if blocker is not None:
        reason = f"{blocker} is a file, not a folder"
    elif path.is_dir() and (e is None or e.errno == errno.EISDIR):
        reason = "it is a folder"
    elif e is not None and e.errno == errno.ENOENT and path.parent.is_dir():
        reason = f"{path.parent} does not take new files"
    elif e is not None and e.errno is not None:
        reason = os.strerror(e.errno)
    else:
        reason = str(e) if e is not None else "not writable"
    err = OutputNotWritableError(f"cannot write {path}: {reason}; choose another output")
    err.errno = e.errno if e is not None else None
    return err


def check_writable(folder: str | Path) -> None:
    """Fail before any work when files cannot be created in ``folder`` (or in the folder that would be created
    there): its nearest existing ancestor must be a folder that this process may write."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        what = "it" if existing == folder else str(existing)
        raise OutputNotWritableError(f"cannot write into {folder}: {what} is a file, not a folder; choose another "
                                     "output")
    if not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only(existing) else errno.EACCES
        raise cannot_write(folder, OSError(code, os.strerror(code)))


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - no statvfs on this platform
        return False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path`` in one rename.

    The temporary name keeps the suffix, so writers that pick the format from it (OpenCV, PyAV) still work.
    The temporary file is created before the caller writes, so a location that cannot be written (a read-only
    folder, a file where a folder is needed) is one ``OutputNotWritableError`` line. On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("wb").close()
    except OSError as e:
        raise (_no_space(path, e) if e.errno in _NO_SPACE else cannot_write(path, e)) from None
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(f"nothing was written to {path}")
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power loss cannot expose an empty file
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise cannot_write(path, e) from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in _NO_SPACE and not isinstance(e, UserError):
            raise _no_space(path, e) from None
        if e.errno in _NOT_WRITABLE and e.filename in (str(tmp), str(path)) and not isinstance(e, UserError):
            raise cannot_write(path, e) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _no_space(path: Path, e: OSError) -> NoSpaceError:
    full = NoSpaceError(f"no space left writing {path} ({os.strerror(e.errno)}): free some space and run "
                        "again; files written before are complete")
    full.errno = e.errno  # set afterwards: OSError(errno, msg) would print an "[Errno 28]" prefix
    return full


def write_text(path: str | Path, text: str) -> Path:
    """``text`` written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON, written atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """``data`` written atomically (Python's own writes, so a full disk raises ``NoSpaceError``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` written atomically; serialised in memory first, since torch's own file writer reports a
    full disk as a generic RuntimeError."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def is_partial(path: Path) -> bool:
    """A temporary file of an atomic write: one in progress, or one that an interrupted write left behind."""
    return path.name.startswith(".") and ".partial-" in path.name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def remove_stale_partials(folder: Path, stem: str | None = None) -> None:
    """Delete the temporary files that killed runs left below ``folder`` (only those of outputs named ``stem``,
    directly in ``folder``, when given: a single-file run cleans up after itself, not a whole folder tree). A
    file whose writer (the pid in its name) is still running is kept: another run may be writing into the same
    folder right now."""
    found = folder.glob(f".{glob.escape(stem)}.partial-*") if stem is not None else folder.rglob(".*.partial-*")
    for path in found:
        digits = path.name.partition(".partial-")[2].split(".", 1)[0]
        if is_partial(path) and path.is_file() and not (digits.isdigit() and _alive(int(digits))):
            path.unlink(missing_ok=True)
