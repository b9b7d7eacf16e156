"""Training threads that use only the cores other processes leave idle (#18 item 4).

Why: torch starts one OpenMP thread per core, and a training step ends at a barrier that waits for
the slowest thread. Beside another busy process (a second demo, an export, a test run) every
step's barrier then waits for a thread the scheduler has parked behind the neighbour's: on the
2-core Xeon two demo-teacher trainings on both cores each ran 3.69 steps/s (passive waits), and
4.13 sharing them (``benchmarks/results/neighbours.md``, same run). So every ``interval`` seconds
the trainer reads how busy the cores it may run on were (``/proc/stat``), subtracts its own CPU
time (``time.process_time``) and sets torch's thread count to the cores the others left, at least
one and at most the configured count; when the neighbour goes, the threads come back. Linux
only: elsewhere (no ``/proc/stat``) the count stays as configured.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: /proc/stat's per-CPU columns that count as busy: user, nice, system, irq, softirq (guest time is
#: already inside user; idle, iowait and steal are not work of any process here)
_BUSY_COLUMNS = (0, 1, 2, 5, 6)


def busy_seconds(stat_text: str, cpus: Iterable[int]) -> float:
    """Seconds the CPUs ``cpus`` have spent busy since boot, from the text of ``/proc/stat``."""
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            cols = rest.split()
            ticks += sum(int(cols[i]) for i in _BUSY_COLUMNS if i < len(cols))
    return ticks / os.sysconf("SC_CLK_TCK")


def threads_for(others: float, cpus: int, max_threads: int) -> int:
    """Threads to use when other processes keep ``others`` of our ``cpus`` cores busy: the cores
    they leave, rounded to the nearest whole core, clamped to ``[1, max_threads]``."""
    return max(1, min(max_threads, int(cpus - others + 0.5)))


def _read_stat() -> str | None:
    try:
        return Path("/proc/stat").read_text(encoding="ascii")
    except OSError:
        return None


class CoreShare:
    """Call :meth:`tick` once a step; it re-sets the thread count at most every ``interval`` s.

    ``set_threads`` is ``torch.set_num_threads`` in the trainer; the readers are parameters so a
    test can play a neighbour arriving and leaving.
    """

    def __init__(self, max_threads: int, set_threads: Callable[[int], None], *,
                 interval: float = 2.0, read_stat: Callable[[], str | None] = _read_stat,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_time: Callable[[], float] = time.process_time,
                 cpus: Iterable[int] | None = None) -> None:
        self.cpus = sorted(cpus if cpus is not None else (
            os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)))
        self.max_threads = max(1, max_threads)
        self.threads = self.max_threads
        self._set, self._read, self._clock, self._cpu = set_threads, read_stat, clock, cpu_time
        self.interval = interval
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        text = self._read()
        if text is None:
            return None
        return self._clock(), busy_seconds(text, self.cpus), self._cpu()

    def tick(self) -> int | None:
        """The new thread count when it changed, else None."""
        if self._last is None or self._clock() - self._last[0] < self.interval:
            return None
        now = self._sample()
        if now is None:
            return None
        wall = now[0] - self._last[0]
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / wall
        self._last = now
        n = threads_for(others, len(self.cpus), self.max_threads)
        if n == self.threads:
            return None
        self.threads = n
        self._set(n)
        return n
