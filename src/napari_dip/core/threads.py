"""How many CPU threads a run gives torch: the cores that other processes leave free, re-checked as the run goes.

Two torch threads on two cores collapse when another process competes for a core: each step waits for the
slower thread, which shares its core (measured: 2.2 s alone, 5.9 s beside one busy process, while one thread took
2.8 s either way; docs/benchmarks.md). So a run measures how much CPU the other processes of the machine use,
every ``interval`` seconds, and uses the cores they leave free, at least one and never more than torch had when
the run began (torch's own default, or what the caller set with ``torch.set_num_threads``).
"""

from __future__ import annotations

import math
import os
import time


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for(free_cores: float, ceiling: int) -> int:
    """Threads for ``free_cores`` cores left free by other processes: a core counts once it is three-quarters
    free (a thread on a core shared with a busy process holds every other thread back), at least one thread."""
    return max(1, min(ceiling, int(math.floor(free_cores + 0.25))))


class CpuUse:
    """CPU seconds used by the whole machine and by this process, to tell how busy the other processes are."""

    def __init__(self):
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._last = self._read()

    def _read(self):
        machine = self._psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        own = self._process.cpu_times()
        return time.monotonic(), busy, own.user + own.system

    def others(self) -> float | None:
        """Cores' worth of CPU used by other processes since the last call; None if too little time has passed."""
        now = self._read()
        elapsed = now[0] - self._last[0]
        if elapsed < 0.05:
            return None
        others = ((now[1] - self._last[1]) - (now[2] - self._last[2])) / elapsed
        self._last = now
        return max(0.0, others)


def cpu_use() -> CpuUse | None:
    """A :class:`CpuUse`, or None where the load cannot be measured (no psutil, or no access to the counters)."""
    try:
        return CpuUse()
    except (ImportError, OSError, AttributeError):
        return None


def cores_used_by_others(look: float = 0.2) -> float:
    """Cores' worth of CPU that other processes use, measured over ``look`` seconds; 0 where it cannot be
    measured."""
    use = cpu_use()
    if use is None:
        return 0.0
    time.sleep(look)
    return use.others() or 0.0


class ThreadGovernor:
    """Sets torch's thread count for one CPU run from the measured load of the other processes.

    :meth:`start` measures for ``first_look`` seconds and sets the count; :meth:`poll` (cheap; call it every
    iteration) re-measures once ``interval`` seconds have passed; :meth:`finish` puts back the count the run
    found. Without psutil the count is left alone.
    """

    def __init__(self, interval: float = 2.0, first_look: float = 0.2, use: CpuUse | None = None):
        self.interval = interval
        self.first_look = first_look
        self.ceiling = None
        self.threads = None
        self.changes = 0
        self._use = use  # what measures the other processes' CPU use (a CpuUse, made at start by default)
        self._next = math.inf

    def start(self) -> ThreadGovernor:
        import torch

        self.ceiling = torch.get_num_threads()
        self.threads = self.ceiling
        if self._use is None:
            self._use = cpu_use()
            if self._use is None:
                return self
        if self.ceiling > 1:
            time.sleep(self.first_look)
            self._set(self._use.others())
        self._next = time.monotonic() + self.interval
        return self

    def poll(self) -> None:
        if self._use is None or self.ceiling <= 1 or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        self._set(self._use.others())

    def _set(self, others: float | None) -> None:
        import torch

        if others is None:
            return
        threads = threads_for(usable_cores() - others, self.ceiling)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.changes += 1

    def finish(self) -> None:
        import torch

        if self.ceiling is not None and torch.get_num_threads() != self.ceiling:
            torch.set_num_threads(self.ceiling)

    def describe(self) -> dict:
        """For the run record: the ceiling, the count at the end and how often it changed."""
        return {"policy": "cores left free by other processes, re-checked every "
                          f"{self.interval:g} s", "most": self.ceiling, "last": self.threads,
                "changes": self.changes}
