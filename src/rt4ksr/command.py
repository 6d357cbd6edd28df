"""How every Hydra command starts: ``hydra.main`` over ``user_command``, with Hydra's own mistakes in one line.

Hydra composes the config before a command's code runs, so a misspelt option (``tilee=5``, ``--tilee 5``), a
preset that does not exist (``model=rt4ksr_x9``) or an override it cannot parse would otherwise end in
Hydra's multi-line message (which advises ``+tilee=5``) or in argparse's usage block. ``hydra_command`` says
them as one ``error:`` line, with the closest option name, and exits with status 1.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from rt4ksr.core import threads
from rt4ksr.core.config import CONFIG_DIR
from rt4ksr.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    ConfigValueError,
    Terminated,
    sigterm_interrupts,
    user_command,
)

# Hydra 1.3's own command-line flags (hydra/_internal/utils.py, get_args_parser)
HYDRA_FLAGS = frozenset({"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "--resolve", "-p", "--package",
                         "-r", "--run", "-m", "--multirun", "-sc", "--shell-completion", "-cp", "--config-path",
                         "-cn", "--config-name", "-cd", "--config-dir", "-i", "--info", "--experimental-rerun"})


def hydra_command(config_name: str, flags: Iterable[str] = (), sigterm: bool = True, say_threads: bool = True
                  ) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    """``hydra.main`` on the packaged config ``config_name`` over ``user_command``. ``flags``: the command's own
    ``--flag`` names (translated before Hydra runs), offered when a misspelt one is close to them; ``sigterm``:
    as in ``user_command``; ``say_threads``: print the thread policy's choice on stderr (off for commands that
    only list things)."""

    def decorate(fn: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        started = False

        @functools.wraps(fn)
        def task(cfg: DictConfig) -> Any:
            nonlocal started
            started = True
            threads.configure(cfg.get("threads"), announce=say_threads)  # one policy for every command
            try:
                return fn(cfg)
            finally:
                threads.release()  # a command run inside another program leaves its torch settings as they were

        app = hydra.main(version_base="1.3", config_path=CONFIG_DIR,
                         config_name=config_name)(user_command(task, sigterm=sigterm))

        @functools.wraps(fn)
        def main(cfg_passthrough: DictConfig | None = None) -> Any:
            nonlocal started
            started = False
            if cfg_passthrough is not None:  # a composed config (tests, notebooks): no command line to check
                return app(cfg_passthrough)
            full_error = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach this function instead of being printed
            try:
                check_flags(sys.argv[1:], config_name, flags)
                with sigterm_interrupts() if sigterm else contextlib.nullcontext():  # while Hydra composes, too
                    return app()
            except (ConfigCompositionException, OverrideParseException, ConfigValueError) as e:
                if started:  # raised by the command's own code: not a command-line mistake
                    raise
                print(f"error: {describe(e, config_name)}", file=sys.stderr)
                raise SystemExit(EXIT_USER_ERROR) from None
            except KeyboardInterrupt as e:  # before the command's code runs (while importing or composing)
                terminated = isinstance(e, Terminated)
                print("terminated" if terminated else "interrupted", file=sys.stderr)
                raise SystemExit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
            finally:
                if full_error is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = full_error

        return main

    return decorate


def config_keys(config_name: str) -> list[str]:
    """The top-level options of a packaged config and the config groups (``model``, ``experiment``, ...)."""
    cfg = OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml")
    keys = [str(k) for k in cfg if k not in ("defaults", "hydra")]
    groups = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name != "hydra")
    return keys + [g for g in groups if g not in keys]


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


def check_flags(argv: list[str], config_name: str, flags: Iterable[str] = ()) -> None:
    """Refuse a ``-x``/``--xyz`` argument that is neither Hydra's nor the command's, before argparse prints its
    usage block; the closest flag or option is suggested."""
    for arg in argv:
        flag = arg.partition("=")[0]
        if not arg.startswith("-") or flag in HYDRA_FLAGS or arg[1:2].isdigit():
            continue
        name = flag.lstrip("-")
        near_flag = _suggest(flag, flags)
        near_key = _suggest(name, config_keys(config_name))
        if near_flag:
            hint = f" (did you mean '{near_flag}'?)"
        elif near_key:
            hint = f" (did you mean '{near_key}'? options are given as {near_key}=VALUE)"
        else:
            hint = "; options are given as key=value, and --help lists them"
        raise ConfigValueError(f"unknown option '{flag}'{hint}")


def describe(e: Exception, config_name: str) -> str:
    """One line for a composition error: the unknown option and its closest name, or the missing preset and
    the available ones."""
    cause = e.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and getattr(cause, "full_key", None):
        key, name = str(cause.full_key), str(cause.key)
        prefix = key[: len(key) - len(name)]
        parent = cause.parent_node
        candidates = [str(k) for k in parent.keys() if k != "hydra"] if isinstance(parent, DictConfig) else []
        if not prefix:
            candidates += [k for k in config_keys(config_name) if k not in candidates]
        near = _suggest(name, candidates)
        hint = f" (did you mean '{prefix}{near}'?)" if near else "; --help lists the options"
        return f"unknown option '{key}'{hint}"
    if isinstance(e, MissingConfigException) and e.options:
        missing = str(e.missing_cfg_file or "")
        group, _, choice = missing.rpartition("/")
        near = _suggest(choice, e.options)
        hint = f" (did you mean {group}={near}?)" if near else ""
        return f"no config '{missing}'{hint}; {group or 'the group'} has: {', '.join(e.options)}"
    text = str(e).split("Config search path:")[0]
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
