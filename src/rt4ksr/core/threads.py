"""One thread policy for every command: how many CPU threads the model, ONNX Runtime, the codecs and the data
workers use, chosen before torch or OpenMP start their pools and kept in step with the machine's load.

Why: torch's intra-op threads (OpenMP) spin while they wait for their siblings. On an idle machine that is the
fastest way to run a network of many small layers; beside another CPU job it is the slowest, because a thread
that spins waiting for a descheduled sibling burns the time slice its sibling needs (a 2-core machine measured
a 37x slowdown beside a training run). Sleeping instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) costs about
half the speed when idle, and measured no better beside a CPU-bound load. So the policy keeps OpenMP's wait and
never runs more threads than there are free cores:

- ``threads=auto`` (the default): the cores this process may use, less the cores that other processes keep
  busy, read from ``/proc/stat`` minus this process's own CPU time: first over the command's own start-up (no
  waiting), then every half second while it runs (``follow_load``, smoothed over 1.5 s so that a burst of the run's
  own data workers moves nothing), so a job that starts or ends beside a long run moves the count within two
  seconds. A seeded step-budget training run holds its start count (``hold``): its weights depend on it.
  Pools that do not spin keep every core they are allowed (OpenVINO).
- ``threads=N`` (or ``RT4KSR_THREADS=N``, or ``OMP_NUM_THREADS=N`` set by the user): exactly N, never changed.

Everything that starts threads asks here: torch (intra-op; inter-op is 1, nothing uses it), ONNX Runtime
sessions (intra-op, never spinning), PyAV's video encoder and OpenCV; DataLoader
workers run one thread each (torch sets it in every worker). Nothing here imports torch at module level:
``prepare_process`` runs before torch is imported.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rt4ksr.core.errors import ConfigValueError

log = logging.getLogger(__name__)

ENV = "RT4KSR_THREADS"
CHECK_EVERY_S = 0.5  # how often a running command re-reads the load
SMOOTH_S = 1.5  # the time constant of the load it follows: a sustained change moves the count in about 1.5 s
# the OpenMP / BLAS pools that read a thread count from the environment when they start
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period) + 0.5)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def parse_threads(value: object, key: str = "threads") -> int | None:
    """``auto`` (None) or a whole number of threads >= 1; a ``ConfigValueError`` naming ``key`` otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "")):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isdigit() else text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigValueError(f"{key} must be auto or a whole number of threads >= 1 (e.g. {key}=2), got {value!r}")
    return value


def requested(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[object, str]:
    """The thread request and where it came from: ``threads=`` on the command line, else ``RT4KSR_THREADS``,
    else the user's own ``OMP_NUM_THREADS``, else auto."""
    for arg in reversed(list(argv)):
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") == "threads":
            return value, "threads="
    if environ.get(ENV, "").strip():
        return environ[ENV], ENV
    if environ.get("OMP_NUM_THREADS", "").strip():
        return environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS"
    return "auto", "auto"


# ------------------------------------------------------------------------------------------------ the load


def _cpu_busy_seconds(cpus: set[int]) -> float | None:
    """Seconds the given CPUs have spent busy since boot (user, nice, system, irq, softirq, steal), from
    ``/proc/stat``; None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in rest.split()]
        busy += v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)  # not idle, iowait, guest
    return busy / hz


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class LoadMeter:
    """Cores kept busy by other processes (this process's child processes included: data workers, encoders)
    between two readings."""

    cpus: set[int] = field(default_factory=lambda: set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else set(range(os.cpu_count() or 1)))
    _last: tuple[float, float, float] | None = None

    def reading(self) -> tuple[float, float, float] | None:
        busy = _cpu_busy_seconds(self.cpus)
        return None if busy is None else (time.monotonic(), busy, _own_cpu_seconds())

    def start(self) -> None:
        self._last = self.reading()

    def others(self, min_window_s: float = 0.05) -> float | None:
        """Cores used by other processes since the last reading (None: unknown, or too short a window to
        tell); the reading becomes the new start."""
        now = self.reading()
        last, self._last = self._last, now if now is not None else self._last
        if now is None or last is None or now[0] - last[0] < min_window_s:
            if last is not None and now is not None:
                self._last = last  # keep the longer window
            return None
        wall = now[0] - last[0]
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / wall)


# ----------------------------------------------------------------------------------------------- the policy


@dataclass
class ThreadPolicy:
    """What a command runs with: ``fixed`` threads (a user's number) or ``auto`` (the free cores, followed)."""

    cores: int
    fixed: int | None
    source: str
    before_torch: bool
    meter: LoadMeter = field(default_factory=LoadMeter)
    current: int = 0
    others: float | None = None
    changes: int = 0  # how often the count moved while the command ran
    held: bool = False  # auto's start count, kept for the whole run (a reproducible training run)
    prepared: bool = False  # made by ``prepare_process``: this process is a command
    announce: bool = False  # say the choice when the CPU first runs the model (not before a one-line error)
    start_threads: int = 0  # torch's count before the policy set its own
    _checked: float = 0.0

    @property
    def limit(self) -> int:
        """The most threads this run may use."""
        return self.fixed if self.fixed is not None else self.cores

    def target(self, others: float | None) -> int:
        """Threads for a load of ``others`` busy cores: the free cores, with a margin against flapping (shrink
        once half a core is taken, grow back once three quarters of one are free)."""
        if self.fixed is not None:
            return self.fixed
        if others is None:
            return self.current or self.cores
        free = self.cores - others
        current = self.current or self.cores
        if free <= current - 0.5 or free >= current + 0.75:
            return max(1, min(self.cores, int(free + 0.25)))
        return current

    def describe(self) -> str:
        if self.held:
            return (f"threads: {self.current} of {self.cores} cores (auto at the start, then held: a seeded "
                    "step-budget run gives the same weights only on one thread count; threads=N fixes it)")
        if self.fixed is not None:
            return f"threads: {self.fixed} ({self.source}; this machine has {self.cores} usable cores)"
        load = "" if self.others is None else f", other processes use {self.others:.1f}"
        return (f"threads: {self.current} of {self.cores} cores (auto{load}; followed while it runs; "
                f"threads=N fixes it)")


_policy: ThreadPolicy | None = None


def prepare_process(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> ThreadPolicy:
    """The first thing a command does, before torch is imported: read the request, size the OpenMP and BLAS
    pools in the environment (where the user has not), and start measuring the load over the start-up. A bad
    value is left for ``configure`` to refuse in one line."""
    global _policy
    environ = os.environ if environ is None else environ
    value, source = requested(sys.argv[1:] if argv is None else argv, environ)
    cores = usable_cores()
    try:
        fixed = parse_threads(value, "threads" if source == "threads=" else source)
    except ConfigValueError:
        fixed, source = None, "invalid"
    before = "torch" not in sys.modules
    limit = fixed if fixed is not None else cores
    for var in POOL_VARIABLES:
        if source != "OMP_NUM_THREADS" or var != "OMP_NUM_THREADS":
            environ[var] = str(limit)
    _policy = ThreadPolicy(cores=cores, fixed=fixed, source=source, before_torch=before, prepared=True)
    _policy.meter.start()
    return _policy


def configure(value: object = None, announce: bool = True) -> ThreadPolicy:
    """Apply the policy for a command whose config says ``threads=value`` (None: what ``prepare_process``
    read): check the value (one line for a bad one) and size torch's pools to the free cores. Called where the
    command starts its work, after its imports, so the start-up is the first window over which the load is
    measured. With ``announce``, the choice is said on stderr when the model first runs on the CPU
    (``follow_load``), so a command that stops at a mistake prints that mistake alone."""
    global _policy
    import torch

    if _policy is None:  # a command run from Python (tests, notebooks): torch is loaded already
        _policy = ThreadPolicy(cores=usable_cores(), fixed=None, source="auto", before_torch=False,
                               start_threads=torch.get_num_threads())
        _policy.meter.start()
    if value is not None:
        fixed = parse_threads(value, "threads")
        if fixed is None and _policy.source == "OMP_NUM_THREADS":
            pass  # the user's own OpenMP setting stands where the config says auto
        elif fixed != _policy.fixed or _policy.source == "invalid":
            _policy.fixed, _policy.source = fixed, "threads=" if fixed is not None else "auto"
    elif _policy.source == "invalid":
        raise ConfigValueError("threads must be auto or a whole number of threads >= 1")
    if _policy.fixed is not None:
        _policy.current = _policy.fixed
    else:
        _policy.others = _policy.meter.others()
        _policy.current = _policy.target(_policy.others)
    _policy._checked = time.monotonic()
    torch.set_num_threads(_policy.current)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # inter-op work has started already (a second command in one process)
            pass
    _opencv_threads(_policy.current)
    _policy.announce = announce
    if not _policy.before_torch and "PYTEST_CURRENT_TEST" not in os.environ and _imported_as_command():
        log.warning("threads: torch was imported before the policy was set; OpenMP's pool size may not follow it")
    return _policy


def _imported_as_command() -> bool:
    return bool(sys.argv) and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]).startswith("rt4ksr"))


def _opencv_threads(n: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(n)
    except (ImportError, AttributeError):  # pragma: no cover - opencv is a dependency
        pass


def _say(p: ThreadPolicy) -> None:
    """The choice, once, on stderr (stdout may carry a command's table or JSON)."""
    if p.announce:
        p.announce = False
        print(p.describe(), file=sys.stderr, flush=True)


def policy() -> ThreadPolicy | None:
    """The policy a command configured, or None (library use: nothing is changed)."""
    return _policy


def threads() -> int:
    """The threads to use now for a pool sized at its start (ONNX Runtime, codecs): the policy's current count,
    or torch's own where no command configured one."""
    if _policy is not None and _policy.current:
        _say(_policy)
        return _policy.current
    import torch

    return torch.get_num_threads()


def hold() -> None:
    """Keep auto's current count for the rest of the run: the float sums of a training step depend on the
    thread count, so a run that promises the same weights for the same seed must not follow the load."""
    p = _policy
    if p is not None and p.fixed is None and p.current:
        p.fixed, p.held = p.current, True


def release() -> None:
    """Forget a policy that a command configured inside another program (tests, notebooks), restoring torch's
    count: the next command, or the caller's own torch code, starts from torch's settings again."""
    global _policy
    p = _policy
    if p is not None and not p.prepared:
        import torch

        _policy = None
        if p.start_threads:
            torch.set_num_threads(p.start_threads)


def summary() -> dict[str, Any]:
    """What the policy did, for a command's report: the setting, the cores, the count now and its changes."""
    p = _policy
    if p is None:
        return {"setting": "none"}
    return {"setting": p.fixed if p.fixed is not None else "auto", "source": p.source, "cores": p.cores,
            "threads": p.current, "changes": p.changes, "held": p.held, "others_last": p.others}


def limit() -> int:
    """The most threads the policy allows (a fixed count, or the usable cores); torch's count without one."""
    if _policy is not None:
        _say(_policy)
        return _policy.limit
    import torch

    return torch.get_num_threads()


def follow_load(force: bool = False) -> int:
    """Re-read the load at most every ``CHECK_EVERY_S`` and resize torch's pool to the free cores; returns the
    thread count. Cheap (a clock read) between checks: call it once per frame, tile, batch or step. A no-op
    for a fixed count, and where no command configured a policy."""
    p = _policy
    if p is None or not p.current:
        return threads()
    _say(p)
    if p.fixed is not None:
        return p.current
    now = time.monotonic()
    if not force and now - p._checked < CHECK_EVERY_S:
        return p.current
    window, p._checked = now - p._checked, now
    others = p.meter.others()
    if others is not None and p.others is not None:  # smoothed: a burst of half a second (the run's own data
        others = p.others + (1 - math.exp(-window / SMOOTH_S)) * (others - p.others)  # workers) moves nothing
    p.others = others
    n = p.target(p.others)
    if n != p.current:
        import torch

        log.debug("threads: %d -> %d (other processes use %.1f cores)", p.current, n, p.others or 0.0)
        p.current, p.changes = n, p.changes + 1
        torch.set_num_threads(n)
        _opencv_threads(n)
    return n


def onnxruntime_options(ort: Any, n: int) -> Any:
    """ONNX Runtime session options for ``n`` intra-op threads that never spin: a pool that spins on after a run
    takes the cores from what follows it in the same command (the image encoder, the video codecs) and from
    other processes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = n
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
