"""Writing outputs so that a kill, a crash or a full disk never leaves a half-written file under its final name.

Every file is written to a hidden temporary name beside its destination, flushed to disk, then renamed over
the destination in one step (``os.replace`` is atomic on one file system). A reader sees the old file or the
new one, never a mix; an interrupted write leaves at most a hidden ``.<name>.partial-<pid>`` file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rt4ksr.errors import UserError

# errors that mean "no room": a full disk, a quota, or a file-size limit (ulimit -f)
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class NoSpaceError(UserError, OSError):
    """The disk (or a quota, or a file-size limit) ran out while writing; the message names the file."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path`` in one rename.

    The temporary name keeps the suffix, so writers that pick the format from it (OpenCV, PyAV) still work.
    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(f"nothing was written to {path}")
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power loss cannot expose an empty file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in _NO_SPACE:
            full = NoSpaceError(f"no space left writing {path} ({os.strerror(e.errno)}): free some space and run "
                                "again; files written before are complete")
            full.errno = e.errno  # set afterwards: OSError(errno, msg) would print an "[Errno 28]" prefix
            raise full from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def remove_stale_partials(folder: Path) -> None:
    """Delete the temporary files that killed runs left below ``folder``. A file whose writer (the pid in its
    name) is still running is kept: another run may be writing into the same folder right now."""
    for path in folder.rglob(".*.partial-*"):
        digits = path.name.partition(".partial-")[2].split(".", 1)[0]
        if is_partial(path) and path.is_file() and not (digits.isdigit() and _alive(int(digits))):
            path.unlink(missing_ok=True)
