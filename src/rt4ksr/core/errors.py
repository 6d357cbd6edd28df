"""User mistakes as one line and a non-zero exit, and everything else with its traceback.

A known mistake (a missing file, an unreadable image, weights for another scale, a missing extra, a full
disk, a wrong option value) raises a ``UserError`` whose message says what is wrong and what to do. Commands
run under ``user_command``, which prints that message as ``error: ...`` on stderr and exits with status 1,
without a traceback. Any other exception is a bug or an environment problem and keeps its traceback.
Ctrl-C and SIGTERM end a command with one line and the shell's status for the signal (130, 143); a command
that saves its state first (training) raises ``Stopped``, whose message says what was saved and how to go on.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 1  # a mistake in the input or the configuration, said in one line
EXIT_FAILURES = 3    # a folder, video or LR run finished, but some files failed (listed above the exit)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
EXIT_TERMINATED = 143   # SIGTERM (128 + SIGTERM)


class UserError(Exception):
    """A mistake in a command's input or configuration; the message says what is wrong and what to do."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class ConfigValueError(UserError, ValueError):
    """An option has a value the command cannot use."""


class UnsupportedInputError(UserError, ValueError):
    """An input whose format or codec cannot be read, or cannot be written in the chosen output format."""


class PartialFailure(UserError):
    """A run over many files finished, but some failed; ``failures`` lists them, one line each (``path: reason``,
    or the reason alone when it names the path)."""

    def __init__(self, what: str, failures: list[str], written: int | None = None) -> None:
        self.failures = [_failure_line(f) for f in failures]
        rest = "no file was written" if written == 0 else "the others were written"
        super().__init__(f"{len(failures)} {what} failed (listed above); {rest}")


def _failure_line(failure: str) -> str:
    """One line for one failure, its path said once: ``a.png: cannot read a.png`` becomes ``cannot read a.png``."""
    line = _one_line(Exception(failure))
    path, sep, reason = line.partition(": ")
    return reason if sep and path and path in reason else line


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so that ``finally`` blocks and the atomic writer's
    cleanup run before the process ends."""


class Stopped(KeyboardInterrupt):
    """A signal (SIGTERM, SIGINT) ended a command after it saved its state; the message says what was saved and
    how to go on, and ``exit_code`` is the shell's 128 + signal number (143, 130)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _quiet_opencv() -> None:
    """OpenCV prints its own decoder warnings for a broken file; the command says it in one line instead."""
    try:
        from cv2.utils import logging as cv_logging

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):  # pragma: no cover - an OpenCV build without the logging API
        pass


def user_command(fn: F | None = None, *, sigterm: bool = True) -> Any:
    """Run a command's main function, turning known mistakes into one line on stderr and a non-zero exit.

    Ctrl-C, and SIGTERM (with ``sigterm``: its handler raises ``Terminated`` in the main thread), end the
    command with one line and status 130 or 143 after ``finally`` blocks have removed temporary files.
    ``sigterm=False`` leaves SIGTERM to the command. Training installs its own handlers while it runs, which
    save a checkpoint first and end with ``Stopped`` (its message, status 143 or 130).
    """
    if fn is None:
        return functools.partial(user_command, sigterm=sigterm)
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet_opencv()
        previous = _on_sigterm(_raise_terminated) if sigterm else None
        try:
            return fn(*args, **kwargs)
        except Stopped as e:  # a signal, after the command saved its state: what was saved, how to go on
            _print(str(e))
            raise SystemExit(e.exit_code) from None
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: temporary files are gone, finished outputs are complete
            terminated = isinstance(e, Terminated)
            _print("terminated" if terminated else "interrupted")
            raise SystemExit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
        except PartialFailure as e:
            for failure in e.failures:
                _print(f"failed: {failure}")
            _print(f"error: {e}")
            raise SystemExit(EXIT_FAILURES) from None
        except UserError as e:
            _print(f"error: {_one_line(e)}")
            raise SystemExit(EXIT_USER_ERROR) from None
        except MissingMandatoryValue as e:  # a '???' option left unset
            key = getattr(e, "full_key", None) or str(e)
            _print(f"error: {key} is required: add {key}=... to the command")
            raise SystemExit(EXIT_USER_ERROR) from None
        except InstantiationException as e:  # a config value that the target class rejects
            said = e.__cause__ if isinstance(e.__cause__, UserError) else e  # its own words, when it has them
            _print(f"error: {_one_line(said)}")
            raise SystemExit(EXIT_USER_ERROR) from None
        finally:
            _on_sigterm(previous)

    return wrapper  # type: ignore[return-value]


def _print(line: str) -> None:
    """A line on stderr, on a line of its own: a progress bar still drawn is cleared first and redrawn below."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(line, file=sys.stderr)
        return
    tqdm.write(line, file=sys.stderr)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` in the main thread (unless a handler is installed
    already), so that it ends in one line and status 143 like Ctrl-C."""
    previous = _on_sigterm(_raise_terminated)
    try:
        yield
    finally:
        _on_sigterm(previous)


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM and return the one it replaces; nothing off the main thread (where Python
    cannot install handlers) or where another handler is already installed (training's, a caller's)."""
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(signal.SIGTERM)
    if handler is _raise_terminated and current is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, handler)
    return current
