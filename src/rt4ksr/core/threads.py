"""One thread policy for every command: how many CPU threads the model, ONNX Runtime, the codecs and the data
workers use, chosen before torch or OpenMP start their pools and kept in step with the machine's load.

Why: torch's intra-op threads (OpenMP) spin while they wait for their siblings. On an idle machine that is the
fastest way to run a network of many small layers; beside another CPU job it is the slowest, because a thread
that spins waiting for a descheduled sibling burns the time slice its sibling needs (a 2-core machine measured
a 37x slowdown beside a training run). Sleeping instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) fixes the
busy case but costs about half the speed when idle. OpenMP reads its wait policy once, when torch loads it, so:

- ``threads=auto`` (the default):
  - the wait policy is chosen at start: spin when the machine is idle (the kernel's count of runnable tasks,
    sampled for 20 ms before torch is imported), sleep (``PASSIVE``) when other processes are running;
  - the thread count follows the load: the cores this process may use less the cores other processes keep
    busy, read from ``/proc/stat`` minus this process's own CPU time, first over the command's own start-up
    (no waiting), then every half second while it runs (``follow_load``), so a job that starts or ends beside a
    long run moves it within a second. Sleeping threads waste nothing while they wait, so where other
    processes fill every core, a sleeping pool keeps all its threads: the scheduler shares the cores by
    runnable thread, and one thread would get a third of a core beside two busy processes.
- ``threads=N`` (or ``RT4KSR_THREADS=N``, or ``OMP_NUM_THREADS=N`` set by the user): exactly N, never changed,
  and OpenMP's own wait policy (``OMP_WAIT_POLICY`` where the user sets it).

Everything that starts threads asks here: torch (intra-op; inter-op is 1, nothing uses it), ONNX Runtime
sessions (intra-op, never spinning), PyAV's decoders and encoders and OpenCV; DataLoader
workers run one thread each (torch sets it in every worker). Nothing here imports torch at module level:
``prepare_process`` runs before torch is imported.
"""

from __future__ import annotations

import logging
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


def _own_running() -> int:
    """This process's threads that are running or runnable now (at least the caller)."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    n += f.read().rpartition(")")[2].split()[0] == "R"
            except OSError:
                pass
    except OSError:
        return 1
    return max(1, n)


def runnable_others(samples: int = 10, interval_s: float = 0.002) -> float | None:
    """Other runnable tasks on the machine now: the mean over ``samples`` readings of the kernel's
    ``procs_running`` less this process's own running threads; None where there is no ``/proc/stat``."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        counts.append(int(line.split()[1]) - _own_running())
                        break
        except OSError:
            return None
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0.0, sum(counts) / len(counts)) if counts else None


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
    passive: bool = False  # OpenMP's threads sleep while they wait (chosen at start: the machine was busy)
    meter: LoadMeter = field(default_factory=LoadMeter)
    current: int = 0
    others: float | None = None
    announce: bool = False  # say the choice when the CPU first runs the model (not before a one-line error)
    _checked: float = 0.0

    @property
    def limit(self) -> int:
        """The most threads this run may use."""
        return self.fixed if self.fixed is not None else self.cores

    def target(self, others: float | None, runnable: float | None = None) -> int:
        """Threads for a load of ``others`` busy cores (``runnable``: other tasks that want a core now): the free
        cores, with a margin against flapping (shrink once half a core is taken, grow back once three quarters
        of one are free). A sleeping pool takes every core where other tasks want them all."""
        if self.fixed is not None:
            return self.fixed
        if others is None:
            return self.current or self.cores
        if self.passive and runnable is not None and runnable >= self.cores - 0.5:
            return self.cores  # every core wanted: sleeping threads claim a fair share without spinning
        free = self.cores - others
        current = self.current or self.cores
        if free <= current - 0.5 or free >= current + 0.75:
            return max(1, min(self.cores, int(free + 0.25)))
        return current

    def describe(self) -> str:
        if self.fixed is not None:
            where = {"threads=": "threads=", ENV: ENV, "OMP_NUM_THREADS": "OMP_NUM_THREADS"}[self.source]
            return f"threads: {self.fixed} ({where}; this machine has {self.cores} usable cores)"
        load = "" if self.others is None else f", other processes use {self.others:.1f}"
        wait = ", threads sleep while they wait" if self.passive else ""
        return (f"threads: {self.current} of {self.cores} cores (auto{load}{wait}; followed while it runs; "
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
    passive = False
    if fixed is None and before and "OMP_WAIT_POLICY" not in environ:
        others = runnable_others()
        passive = others is not None and others >= 0.5
        if passive:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
    _policy = ThreadPolicy(cores=cores, fixed=fixed, source=source, before_torch=before, passive=passive)
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
        _policy = ThreadPolicy(cores=usable_cores(), fixed=None, source="auto", before_torch=False)
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
        _policy.current = _policy.target(_policy.others, _runnable(_policy))
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


def _runnable(p: ThreadPolicy) -> float | None:
    """Other runnable tasks, for a sleeping pool only (a spinning one keeps to the free cores)."""
    return runnable_others(samples=5, interval_s=0.0002) if p.passive else None


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
    p._checked = now
    p.others = p.meter.others()
    n = p.target(p.others, _runnable(p))
    if n != p.current:
        import torch

        log.debug("threads: %d -> %d (other processes use %.1f cores)", p.current, n, p.others or 0.0)
        p.current = n
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
