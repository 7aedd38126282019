"""How much of the machine's CPU its host took away while a benchmark ran: Linux's steal time.

On a shared virtual machine the host runs other guests on the same physical cores; the time it
takes from ours shows in ``/proc/stat`` as *steal*. A stretch with a high share of it times the
neighbours as much as the code, so each benchmark prints the share beside its figures: a ratio
measured while the host took a quarter of the CPU is a figure of that afternoon, not of reaper.
"""

from __future__ import annotations

from pathlib import Path

PROC_STAT = Path("/proc/stat")
STEAL_FIELD = 7  # user nice system idle iowait irq softirq steal ...: the 8th number of the "cpu" line


def cpu_times(stat: Path = PROC_STAT) -> tuple[int, int] | None:
    """(steal, all) in clock ticks since boot, summed over the CPUs; ``None`` where there is no /proc/stat."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[:1] != ["cpu"] or len(first) <= STEAL_FIELD + 1:
        return None
    # guest time is counted inside user time already: the first 8 fields are the whole
    ticks = [int(value) for value in first[1:STEAL_FIELD + 2]]
    return ticks[STEAL_FIELD], sum(ticks)


class StealMeter:
    """The share of CPU time stolen between ``start()`` and ``share()``: 0.25 is a quarter of it."""

    def __init__(self, stat: Path = PROC_STAT) -> None:
        self.stat = stat
        self._start = cpu_times(stat)

    def start(self) -> None:
        """Measure from now on."""
        self._start = cpu_times(self.stat)

    def share(self) -> float | None:
        """Steal since ``start()`` as a share of all CPU time; ``None`` when it cannot be read."""
        now = cpu_times(self.stat)
        if now is None or self._start is None or now[1] <= self._start[1]:
            return None
        return (now[0] - self._start[0]) / (now[1] - self._start[1])


def said(share: float | None) -> str:
    """``host took 12 % of the CPU``, or an empty string where it cannot be read."""
    return "" if share is None else f"host took {100 * share:.0f} % of the CPU"


def beside(share: float | None) -> str:
    """What a figure's line ends with: ``; host took 12 % of the CPU``, or nothing where it cannot be read."""
    return "" if share is None else f"; {said(share)}"
